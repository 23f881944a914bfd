package mediahost

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/callbacks"
	"github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

var (
	waSecret   = []byte("whatsapp-callback-secret-0123456789abcdef")
	msgrSecret = []byte("messenger-callback-secret-0123456789abcdef")
	fooSecret  = []byte("somebody-elses-secret-0123456789abcdef")
)

const (
	baseURL = "https://bridge.example"
	login   = "whatsapp:7-491701110001"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type noPusher struct{}

func (noPusher) Push(context.Context, string, jid.JID, int) error { return nil }

// fixture is a Hosting on a FileStore and a real database, behind the real callbacks
// handler with a secret per network.
type fixture struct {
	h     *Hosting
	db    *database.Database
	store *FileStore
	dir   string
	cb    *callbacks.Handler
	clk   *clock
}

func newFixture(t testing.TB, raw *dbutil.Database) *fixture {
	t.Helper()
	f := &fixture{clk: &clock{t: time.Unix(1_800_000_000, 0)}, dir: filepath.Join(t.TempDir(), "media")}
	log := zerolog.New(zerolog.NewTestWriter(t))
	f.db = database.New(raw, log)
	f.db.Now = f.clk.Now
	if err := f.db.Upgrade(context.Background()); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.store, err = NewFileStore(f.dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.store.Close() })
	if f.h, err = New(Config{BaseURL: baseURL, Store: f.store, Records: f.db, Now: f.clk.Now, Log: log}); err != nil {
		t.Fatal(err)
	}
	f.cb, err = callbacks.New(callbacks.Config{
		Networks: []callbacks.Network{{Name: "whatsapp", IntegratorID: 7, Secret: waSecret}, {Name: "messenger", IntegratorID: 7, Secret: msgrSecret}},
		Tokens:   f.db,
		Pusher:   noPusher{},
		Media:    f.h,
		Now:      f.clk.Now,
		Log:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) host(t *testing.T, network, messageID string, data []byte) (HostedBlob, string) {
	t.Helper()
	hb, err := f.h.Host(context.Background(), network, login, messageID, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	name, ok := strings.CutPrefix(hb.DirectPath, callbacks.MediaPrefix)
	if !ok {
		t.Fatalf("direct path %q is not under %s", hb.DirectPath, callbacks.MediaPrefix)
	}
	return hb, name
}

// fetch sends a request through the callbacks handler, signed with secret at the given
// time when secret is not nil.
func (f *fixture) fetch(method, path string, secret []byte, at time.Time, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://bridge.example"+path, nil)
	if secret != nil {
		callback.SignMediaFetch(r, secret, at)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.cb.ServeHTTP(w, r)
	return w
}

func TestHost(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		f := newFixture(t, raw)
		ctx := context.Background()
		data := randomBytes(t, 70_000)
		hb, name := f.host(t, "whatsapp", "m1", data)
		if len(name) != NameLength || NameLength < 22 || !ValidName(name) {
			t.Fatalf("name %q: want %d URL-safe characters (>= 128 bits)", name, NameLength)
		}
		if hb.URL != baseURL+hb.DirectPath || hb.Size != int64(len(data)) {
			t.Fatalf("hosted %+v", hb)
		}
		rec, err := f.db.HostedMediaByName(ctx, name)
		want := database.HostedMedia{Name: name, Network: "whatsapp", LoginID: login, MessageID: "m1", Size: int64(len(data)), CreatedAt: f.clk.Now()}
		if err != nil || rec == nil || *rec != want {
			t.Fatalf("record %+v, %v; want %+v", rec, err, want)
		}
		if got, err := os.ReadFile(filepath.Join(f.dir, name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("stored %d bytes, %v", len(got), err)
		}
		if _, other := f.host(t, "whatsapp", "m1", data); other == name {
			t.Fatal("two blobs got the same name")
		}

		// Base URLs with a trailing slash or a path prefix.
		for base, wantURL := range map[string]string{
			"https://bridge.example/":      "https://bridge.example/_interop/v1/media/",
			"http://bridge.example:8080/x": "http://bridge.example:8080/x/_interop/v1/media/",
		} {
			h, _ := New(Config{BaseURL: base, Store: f.store, Records: f.db})
			hb, err := h.Host(ctx, "whatsapp", login, "m3", strings.NewReader("x"))
			if err != nil || !strings.HasPrefix(hb.URL, wantURL) || !strings.HasSuffix(hb.URL, hb.DirectPath) {
				t.Errorf("base %s: %+v %v", base, hb, err)
			}
		}

		// Failures leave neither a row nor a file.
		before := listDir(t, f.dir)
		for _, base := range []string{"", "bridge.example", "ftp://bridge.example", "https://user:pw@bridge.example"} {
			h, _ := New(Config{BaseURL: base, Store: f.store, Records: f.db})
			if _, err := h.Host(ctx, "whatsapp", login, "m4", strings.NewReader("x")); err == nil ||
				!strings.Contains(err.Error(), "callback base URL") {
				t.Errorf("base %q: Host = %v, want a callback base URL error", base, err)
			}
		}
		if _, err := f.h.Host(ctx, "whatsapp", login, "m4", &failingReader{n: 50_000}); err == nil {
			t.Fatal("a failing upload was hosted")
		}
		// The message is revoked while its blob is being written.
		revoking := io.MultiReader(strings.NewReader("first part"), readerFunc(func([]byte) (int, error) {
			if err := f.h.Forget(ctx, login, "m5"); err != nil {
				t.Error(err)
			}
			return 0, io.EOF
		}))
		if _, err := f.h.Host(ctx, "whatsapp", login, "m5", revoking); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("Host during a revoke = %v", err)
		}
		if after := listDir(t, f.dir); len(after) != len(before) {
			t.Fatalf("failed uploads left files: %v -> %v", before, after)
		}
		for _, m := range []string{"m4", "m5"} {
			if names, err := f.db.HostedMediaOfMessage(ctx, login, m); err != nil || len(names) != 0 {
				t.Fatalf("failed upload of %s left rows %v %v", m, names, err)
			}
		}
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestServeMedia(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		f := newFixture(t, raw)
		data := randomBytes(t, 100_000)
		hb, name := f.host(t, "whatsapp", "m1", data)
		_, msgrName := f.host(t, "messenger", "m2", []byte("messenger blob"))
		size := len(data)
		p := hb.DirectPath
		now := f.clk.Now()
		unknown := strings.Repeat("A", NameLength)
		for _, tc := range []struct {
			name    string
			method  string
			path    string
			secret  []byte
			at      time.Time
			hdr     map[string]string
			status  int
			body    []byte // checked when not nil
			headers map[string]string
		}{
			{name: "full GET", path: p, secret: waSecret, status: 200, body: data, headers: map[string]string{
				"Content-Length": strconv.Itoa(size), "Content-Type": "application/octet-stream",
				"Cache-Control": "private, no-store", "Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff"}},
			{name: "messenger's own blob", path: callbacks.MediaPrefix + msgrName, secret: msgrSecret, status: 200, body: []byte("messenger blob")},
			{name: "query ignored", path: p + "?name=..%2F..%2Fsecret", secret: waSecret, status: 200, body: data},
			{name: "4 minutes old", path: p, secret: waSecret, at: now.Add(-4 * time.Minute), status: 200, body: data},
			{name: "unsigned", path: p, status: 401},
			{name: "signature only", path: p, hdr: map[string]string{callback.HeaderSignature: callback.MediaSignature(waSecret, p, "")}, status: 401},
			{name: "badly signed", path: p, secret: fooSecret, status: 401},
			{name: "garbage signature", path: p, hdr: map[string]string{
				callback.HeaderTimestamp: strconv.FormatInt(now.Unix(), 10), callback.HeaderSignature: "sha256=zz"}, status: 401},
			{name: "signed for another path", path: p, hdr: map[string]string{
				callback.HeaderTimestamp: strconv.FormatInt(now.Unix(), 10),
				callback.HeaderSignature: callback.MediaSignature(waSecret, callbacks.MediaPrefix+msgrName, strconv.FormatInt(now.Unix(), 10))}, status: 401},
			{name: "stale", path: p, secret: waSecret, at: now.Add(-6 * time.Minute), status: 401},
			{name: "future", path: p, secret: waSecret, at: now.Add(6 * time.Minute), status: 401},
			{name: "other network's secret", path: p, secret: msgrSecret, status: 404},
			{name: "other network's blob", path: callbacks.MediaPrefix + msgrName, secret: waSecret, status: 404},
			{name: "unknown name", path: callbacks.MediaPrefix + unknown, secret: waSecret, status: 404},
			{name: "short name", path: callbacks.MediaPrefix + name[:20], secret: waSecret, status: 404},
			{name: "listing", path: callbacks.MediaPrefix, secret: waSecret, status: 404},
			{name: "trailing slash", path: p + "/", secret: waSecret, status: 404},
			{name: "double slash", path: callbacks.MediaPrefix + "/" + name, secret: waSecret, status: 404},
			{name: "dot dot", path: callbacks.MediaPrefix + "../media/" + name, secret: waSecret, status: 404},
			{name: "escaped dot dot", path: callbacks.MediaPrefix + "%2e%2e/media/" + name, secret: waSecret, status: 404},
			{name: "escaped slash", path: callbacks.MediaPrefix + "x%2F" + name, secret: waSecret, status: 404},
			{name: "escaped letter", path: callbacks.MediaPrefix + "%" + strconv.FormatInt(int64(name[0]), 16) + name[1:], secret: waSecret, status: 404},
			{name: "parent file", path: callbacks.MediaPrefix + "..%2Fsecret", secret: waSecret, status: 404},
			{name: "temporary file", path: callbacks.MediaPrefix + ".tmp-" + name[:30], secret: waSecret, status: 404},
			{name: "HEAD is not signed", method: "HEAD", path: p, secret: waSecret, status: 401},
			{name: "range head", path: p, secret: waSecret, hdr: map[string]string{"Range": "bytes=0-9"}, status: 206, body: data[:10],
				headers: map[string]string{"Content-Range": "bytes 0-9/" + strconv.Itoa(size), "Content-Length": "10"}},
			{name: "range tail from 10", path: p, secret: waSecret, hdr: map[string]string{"Range": "bytes=10-"}, status: 206, body: data[10:],
				headers: map[string]string{"Content-Range": "bytes 10-" + strconv.Itoa(size-1) + "/" + strconv.Itoa(size)}},
			{name: "suffix range", path: p, secret: waSecret, hdr: map[string]string{"Range": "bytes=-5"}, status: 206, body: data[size-5:],
				headers: map[string]string{"Content-Length": "5"}},
			{name: "unsatisfiable range", path: p, secret: waSecret, hdr: map[string]string{"Range": "bytes=" + strconv.Itoa(size) + "-"}, status: 416,
				headers: map[string]string{"Content-Range": "bytes */" + strconv.Itoa(size)}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				method := tc.method
				if method == "" {
					method = "GET"
				}
				at := tc.at
				if at.IsZero() {
					at = now
				}
				w := f.fetch(method, tc.path, tc.secret, at, tc.hdr)
				if w.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
				}
				if tc.body != nil && !bytes.Equal(w.Body.Bytes(), tc.body) {
					t.Fatalf("body of %d bytes differs from the %d expected", w.Body.Len(), len(tc.body))
				}
				for k, v := range tc.headers {
					if got := w.Header().Get(k); got != v {
						t.Errorf("%s: %q, want %q", k, got, v)
					}
				}
				if tc.status == 404 && strings.Contains(w.Body.String(), "network") {
					t.Errorf("404 says too much: %s", w.Body)
				}
			})
		}
	})
}

// TestServeMediaMethods calls ServeMedia directly, as the handler does once a fetch
// verified: HEAD answers the length without a body, other methods are refused.
func TestServeMediaMethods(t *testing.T) {
	f := newFixture(t, sqltest.SQLite(t))
	data := randomBytes(t, 4096)
	_, name := f.host(t, "whatsapp", "m1", data)
	for _, tc := range []struct {
		method string
		status int
		length string
		body   int
	}{
		{"GET", 200, "4096", 4096},
		{"HEAD", 200, "4096", 0},
		{"POST", 405, "", -1},
		{"PUT", 405, "", -1},
		{"DELETE", 405, "", -1},
	} {
		t.Run(tc.method, func(t *testing.T) {
			w := httptest.NewRecorder()
			f.h.ServeMedia(w, httptest.NewRequest(tc.method, callbacks.MediaPrefix+name, nil), "whatsapp", name)
			if w.Code != tc.status || (tc.length != "" && w.Header().Get("Content-Length") != tc.length) ||
				(tc.body >= 0 && w.Body.Len() != tc.body) {
				t.Fatalf("status %d, length %q, body %d bytes", w.Code, w.Header().Get("Content-Length"), w.Body.Len())
			}
			if tc.status == 405 && w.Header().Get("Allow") != "GET, HEAD" {
				t.Fatalf("Allow: %q", w.Header().Get("Allow"))
			}
		})
	}
	// A row whose blob is gone (deleted by hand, or a crash mid-upload) is a plain 404.
	if err := os.Remove(filepath.Join(f.dir, name)); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	f.h.ServeMedia(w, httptest.NewRequest("GET", callbacks.MediaPrefix+name, nil), "whatsapp", name)
	if w.Code != 404 {
		t.Fatalf("missing blob: status %d", w.Code)
	}
}

func TestForget(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		f := newFixture(t, raw)
		ctx := context.Background()
		hb1, n1 := f.host(t, "whatsapp", "m1", []byte("first"))
		hb2, n2 := f.host(t, "whatsapp", "m1", []byte("second"))
		hb3, n3 := f.host(t, "whatsapp", "m2", []byte("other message"))
		if err := f.h.Forget(ctx, login, "m1"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			hb     HostedBlob
			name   string
			status int
		}{{hb1, n1, 404}, {hb2, n2, 404}, {hb3, n3, 200}} {
			if w := f.fetch("GET", c.hb.DirectPath, waSecret, f.clk.Now(), nil); w.Code != c.status {
				t.Errorf("fetch of %s after the revoke: %d, want %d", c.name, w.Code, c.status)
			}
			_, statErr := os.Stat(filepath.Join(f.dir, c.name))
			rec, err := f.db.HostedMediaByName(ctx, c.name)
			if err != nil {
				t.Fatal(err)
			}
			if gone := c.status == 404; gone != errors.Is(statErr, os.ErrNotExist) || gone != (rec == nil) {
				t.Errorf("%s: file err %v, row %+v; want gone=%v", c.name, statErr, rec, gone)
			}
		}
		// Nothing left to forget, or never hosted: no error.
		for _, m := range []string{"m1", "never"} {
			if err := f.h.Forget(ctx, login, m); err != nil {
				t.Errorf("Forget(%s) = %v", m, err)
			}
		}
		// Another login's message with the same id is not touched.
		if err := f.h.Forget(ctx, "whatsapp:7-491709999999", "m2"); err != nil {
			t.Fatal(err)
		}
		if w := f.fetch("GET", hb3.DirectPath, waSecret, f.clk.Now(), nil); w.Code != 200 {
			t.Fatalf("another login's revoke removed m2: %d", w.Code)
		}
	})
}
