package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
)

// clock is an adjustable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(time.Now().Unix(), 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// encrypted is one encrypted blob with what a message says about it.
type encrypted struct {
	plain []byte
	blob  []byte
	exp   mediacrypt.Expected
}

func encrypt(t testing.TB, size int, typ mediacrypt.MediaType) encrypted {
	t.Helper()
	plain := make([]byte, size)
	if _, err := rand.Read(plain); err != nil {
		t.Fatal(err)
	}
	key, err := mediacrypt.NewMediaKey()
	if err != nil {
		t.Fatal(err)
	}
	var blob bytes.Buffer
	res, err := mediacrypt.Encrypt(&blob, bytes.NewReader(plain), key, typ)
	if err != nil {
		t.Fatal(err)
	}
	return encrypted{plain: plain, blob: blob.Bytes(), exp: mediacrypt.Expected{MediaKey: key, Type: typ,
		FileSHA256: res.FileSHA256, FileEncSHA256: res.FileEncSHA256, FileLength: res.FileLength}}
}

// testHost is a Host behind an httptest server.
type testHost struct {
	h   *Host
	srv *httptest.Server
	clk *clock
}

func newTestHost(t testing.TB, cfg HostConfig) *testHost {
	t.Helper()
	clk := newClock()
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	cfg.Log = zerolog.Nop()
	h, err := NewHost(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	h.SetHosts([]string{strings.TrimPrefix(srv.URL, "http://")})
	return &testHost{h: h, srv: srv, clk: clk}
}

func (th *testHost) upload(t testing.TB, blob []byte) string {
	t.Helper()
	path, err := th.h.Upload(context.Background(), bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func (th *testHost) token(t testing.TB) string {
	t.Helper()
	auth, ttl, hosts := th.h.MediaConn(jid.Interop(1, "491701234567"))
	if auth == "" || ttl <= 0 || len(hosts) != 1 {
		t.Fatalf("MediaConn gave auth %d bytes, ttl %s, hosts %v", len(auth), ttl, hosts)
	}
	return auth
}

// get requests path with the given Authorization header value ("" for none) and
// extra headers, and returns the status and body.
func (th *testHost) get(t testing.TB, method, path, authz string, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, th.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}

func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func newServer(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// status GETs url with an Authorization header and returns the status code.
func status(t testing.TB, url, authz string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authz)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}
