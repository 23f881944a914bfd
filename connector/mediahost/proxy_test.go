package mediahost

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
)

// TestThroughMetaProxy: what a user sends is encrypted, hosted, and fetched over HTTP
// by the simulator's media proxy exactly as Meta's would, which verifies both hashes
// and the MAC and gets the plaintext back byte for byte. Another integrator's secret
// gets nothing.
func TestThroughMetaProxy(t *testing.T) {
	f := newFixture(t, sqltest.SQLite(t))
	mux := http.NewServeMux()
	f.cb.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	h, err := New(Config{BaseURL: srv.URL, Store: f.store, Records: f.db, Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	proxy := media.NewProxy(media.ProxyConfig{TempDir: t.TempDir(), Now: f.clk.Now})
	ctx := context.Background()
	for _, size := range []int{0, 1, 15, 16, 100_000, 3<<20 + 5} {
		plain := randomBytes(t, size)
		key, err := mediacrypt.NewMediaKey()
		if err != nil {
			t.Fatal(err)
		}
		// The blob streams from the encryption into the store through a pipe.
		pr, pw := io.Pipe()
		resc := make(chan mediacrypt.Result, 1)
		go func() {
			res, err := mediacrypt.Encrypt(pw, bytes.NewReader(plain), key, mediacrypt.Document)
			resc <- res
			pw.CloseWithError(err)
		}()
		hb, err := h.Host(ctx, "whatsapp", login, "m", pr)
		if err != nil {
			t.Fatal(err)
		}
		res := <-resc
		if hb.Size != int64(res.EncLength) {
			t.Fatalf("%d bytes: hosted size %d, blob %d", size, hb.Size, res.EncLength)
		}
		exp := mediacrypt.Expected{MediaKey: key, Type: mediacrypt.Document, FileSHA256: res.FileSHA256,
			FileEncSHA256: res.FileEncSHA256, FileLength: res.FileLength}
		wa := gateway.Integrator{ID: 7, MediaOrigin: srv.URL, CallbackSecret: waSecret}
		file, err := proxy.Fetch(ctx, wa, hb.URL, exp)
		if err != nil {
			t.Fatalf("%d bytes: proxy fetch: %v", size, err)
		}
		got, err := io.ReadAll(file)
		_ = file.Close()
		_ = os.Remove(file.Name())
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: the proxy got %d different bytes (%v)", size, len(got), err)
		}
		other := gateway.Integrator{ID: 7, MediaOrigin: srv.URL, CallbackSecret: fooSecret}
		var status *media.HTTPStatusError
		if _, err := proxy.Fetch(ctx, other, hb.URL, exp); !errors.As(err, &status) || status.Code != 401 {
			t.Fatalf("%d bytes: fetch with a foreign secret: %v", size, err)
		}
		msgr := gateway.Integrator{ID: 7, MediaOrigin: srv.URL, CallbackSecret: msgrSecret}
		if _, err := proxy.Fetch(ctx, msgr, hb.URL, exp); !errors.As(err, &status) || status.Code != 404 {
			t.Fatalf("%d bytes: fetch with the other network's secret: %v", size, err)
		}
	}
	// The proxy's clock six minutes off: refused.
	late := media.NewProxy(media.ProxyConfig{TempDir: t.TempDir(), Now: func() time.Time { return f.clk.Now().Add(6 * time.Minute) }})
	hb2, err := h.Host(ctx, "whatsapp", login, "late", bytes.NewReader(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	var status *media.HTTPStatusError
	if _, err := late.Fetch(ctx, gateway.Integrator{MediaOrigin: srv.URL, CallbackSecret: waSecret}, hb2.URL,
		mediacrypt.Expected{MediaKey: make([]byte, 32), Type: mediacrypt.Image, FileSHA256: make([]byte, 32), FileEncSHA256: make([]byte, 32)}); !errors.As(err, &status) || status.Code != 401 {
		t.Fatalf("stale proxy fetch: %v", err)
	}
}
