//go:build synapse

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
)

// TestSynapseMediaHostRefusals: the bridge process serves a hosted blob on its real
// listener only to fetches signed with the right network's secret within five minutes,
// with Range support, and refuses every path trick. The blob is put in the bridge's
// media folder and table directly, so this test needs nothing of the send path (the
// media_out tests cover that through the simulator's proxy).
func TestSynapseMediaHostRefusals(t *testing.T) {
	e := startStack(t, false, nil)
	b := e.st.Bridge

	var rnd [32]byte
	_, _ = rand.Read(rnd[:])
	name := base64.RawURLEncoding.EncodeToString(rnd[:])
	blob := make([]byte, 50_000)
	_, _ = rand.Read(blob)
	dir := filepath.Join(b.Dir, "media")
	e.must(os.MkdirAll(dir, 0o700))
	e.must(os.WriteFile(filepath.Join(dir, name), blob, 0o600))
	// A file beside the media folder that no path may reach.
	e.must(os.WriteFile(filepath.Join(b.Dir, "secret"), []byte("private"), 0o600))
	_, err := b.ExecSQLite(e.ctx, `INSERT INTO interop_bridge_hosted_media (name, network, login_id, message_id, size, created_at)
		VALUES ($1, 'whatsapp', 'whatsapp:7-491701110001', 'seeded', $2, $3)`, name, len(blob), time.Now().UnixMilli())
	e.must(err)

	wa, msgr := []byte(e.st.Sim.Secrets["whatsapp"]), []byte(e.st.Sim.Secrets["messenger"])
	client := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	path := "/_interop/v1/media/" + name
	size := strconv.Itoa(len(blob))
	for _, tc := range []struct {
		name    string
		method  string
		path    string
		secret  []byte
		skew    time.Duration
		rng     string
		follow  bool // follow redirects, keeping the signature headers
		status  int
		body    []byte
		headers map[string]string
	}{
		{name: "signed GET", path: path, secret: wa, status: 200, body: blob, headers: map[string]string{
			"Content-Length": size, "Content-Type": "application/octet-stream", "Cache-Control": "private, no-store"}},
		{name: "range", path: path, secret: wa, rng: "bytes=0-9", status: 206, body: blob[:10],
			headers: map[string]string{"Content-Range": "bytes 0-9/" + size}},
		{name: "open range", path: path, secret: wa, rng: "bytes=10-", status: 206, body: blob[10:]},
		{name: "suffix range", path: path, secret: wa, rng: "bytes=-5", status: 206, body: blob[len(blob)-5:]},
		{name: "unsatisfiable range", path: path, secret: wa, rng: "bytes=" + size + "-", status: 416},
		{name: "unsigned", path: path, status: 401},
		{name: "other integrator's secret", path: path, secret: []byte(strings.Repeat("x", 40)), status: 401},
		{name: "stale", path: path, secret: wa, skew: -6 * time.Minute, status: 401},
		{name: "future", path: path, secret: wa, skew: 6 * time.Minute, status: 401},
		{name: "HEAD", method: "HEAD", path: path, secret: wa, status: 401},
		{name: "other network", path: path, secret: msgr, status: 404},
		{name: "unknown name", path: "/_interop/v1/media/" + strings.Repeat("A", len(name)), secret: wa, status: 404},
		{name: "listing", path: "/_interop/v1/media/", secret: wa, status: 404},
		{name: "trailing slash", path: path + "/", secret: wa, status: 404},
		{name: "escaped dot dot", path: "/_interop/v1/media/%2e%2e%2fsecret", secret: wa, status: 404},
		{name: "escaped slash", path: "/_interop/v1/media/..%2F..%2Fsecret", secret: wa, status: 404},
		// The router redirects these to their clean paths, where the signature (over the
		// path as sent) no longer verifies or no media lives.
		{name: "dot dot", path: "/_interop/v1/media/../../secret", secret: wa, status: 307},
		{name: "dot dot followed", path: "/_interop/v1/media/../../secret", secret: wa, follow: true, status: 404},
		{name: "double slash", path: "/_interop/v1/media//" + name, secret: wa, status: 307},
		{name: "double slash followed", path: "/_interop/v1/media//" + name, secret: wa, follow: true, status: 401},
		{name: "dot dot to the blob followed", path: "/_interop/v1/media/x/../" + name, secret: wa, follow: true, status: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			req, err := http.NewRequestWithContext(e.ctx, method, b.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.secret != nil {
				callback.SignMediaFetch(req, tc.secret, time.Now().Add(tc.skew))
			}
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			c := client
			if tc.follow {
				c = &http.Client{Timeout: 10 * time.Second}
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %.200s", resp.StatusCode, tc.status, got)
			}
			if tc.body != nil && !bytes.Equal(got, tc.body) {
				t.Fatalf("%d bytes differ from the %d expected", len(got), len(tc.body))
			}
			if tc.body == nil && (bytes.Contains(got, blob[:16]) || bytes.Contains(got, []byte("private"))) {
				t.Fatal("a refusal leaked blob or file bytes")
			}
			for k, v := range tc.headers {
				if resp.Header.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, resp.Header.Get(k), v)
				}
			}
		})
	}
}
