package connector

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// TestMediaHostWiring: Start sets up media hosting on the configured folder and base
// URL and serves it through the callback handler to fetches signed with the network's
// secret; a revoke makes the blob unreachable.
func TestMediaHostWiring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "media")
	c := newTestConnector(t, func(c *config.NetworkConfig) {
		c.CallbackBaseURL = "https://bridge.example"
		c.Media.StorePath = dir
	})
	newTestBridge(t, sqltest.SQLite(t), c)
	if c.Media == nil {
		t.Fatal("Start did not set up media hosting")
	}
	ctx := context.Background()
	data := bytes.Repeat([]byte("blob"), 5000)
	hb, err := c.Media.Host(ctx, "whatsapp", "whatsapp:12-491701234567", "msg1", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hb.URL, "https://bridge.example/_interop/v1/media/") {
		t.Fatalf("hosted at %s", hb.URL)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Fatalf("media folder holds %d files (%v)", len(entries), err)
	}
	path := hb.DirectPath
	fetch := func(secret string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		callback.SignMediaFetch(r, []byte(secret), time.Now())
		w := httptest.NewRecorder()
		c.Callbacks.ServeHTTP(w, r)
		return w
	}
	wa := c.Config.WhatsApp.CallbackSecret
	if w := fetch(wa); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), data) {
		t.Fatalf("fetch: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w := fetch(strings.Repeat("x", 40)); w.Code != 401 {
		t.Fatalf("fetch with a wrong secret: %d", w.Code)
	}
	if err := c.Media.Forget(ctx, "whatsapp:12-491701234567", "msg1"); err != nil {
		t.Fatal(err)
	}
	if w := fetch(wa); w.Code != 404 {
		t.Fatalf("fetch after the revoke: %d", w.Code)
	}
}
