// Package simtest runs a whole simulator (metasim) inside a test: in-memory or on a
// data dir, on free 127.0.0.1 ports, with a fake provider that answers the gateways'
// auth and push callbacks, and a small client for the control API. The simulator's
// own tests use it, and so can the bridge's end-to-end tests.
//
// It is meant to be imported from tests only. It must not import the bridge.
package simtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

// IntegratorID is the integrator the fake provider plays.
const IntegratorID = 1

// Token is the control API token of test simulators.
const Token = "simtest-control-token-0123456789"

// Provider is a fake third-party provider: it checks the gateways' callback
// signatures (PROTOCOL.md section 9), accepts the tokens it was given and records push
// callbacks.
type Provider struct {
	URL    string
	Secret string

	srv    *httptest.Server
	mu     sync.Mutex
	tokens map[string]string // account JID → valid token
	pushes []Push
	bad    int
	blobs  map[string][]byte // path → media blob the provider hosts
	media  int               // signed media fetches served
}

// Push is one push callback received.
type Push struct {
	JID     string `json:"jid"`
	Pending int    `json:"pending"`
}

// NewProvider starts a fake provider for the test's duration.
func NewProvider(tb testing.TB) *Provider {
	p := &Provider{Secret: "simtest-callback-secret-0123456789abcdef", tokens: map[string]string{},
		blobs: map[string][]byte{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	tb.Cleanup(p.srv.Close)
	return p
}

func (p *Provider) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		p.serveMedia(w, r)
		return
	}
	body, err := callback.VerifyRequest(r, []byte(p.Secret), time.Now(), 1<<20)
	if err != nil {
		p.mu.Lock()
		p.bad++
		p.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/_interop/v1/auth":
		var req struct{ JID, Token string }
		if json.Unmarshal(body, &req) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		want, ok := p.tokens[req.JID]
		p.mu.Unlock()
		if !ok || !hmac.Equal([]byte(want), []byte(req.Token)) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"valid": true, "expires_at": time.Now().Add(24 * time.Hour).Unix()})
	case "/_interop/v1/push":
		var push Push
		if json.Unmarshal(body, &push) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.pushes = append(p.pushes, push)
		p.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	default:
		http.NotFound(w, r)
	}
}

// serveMedia serves a hosted blob to the media proxy's signed GETs only (section 7).
func (p *Provider) serveMedia(w http.ResponseWriter, r *http.Request) {
	if err := callback.VerifyMediaFetch(r, []byte(p.Secret), time.Now()); err != nil {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	blob, ok := p.blobs[r.URL.Path]
	if ok {
		p.media++
	}
	p.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
}

// Host makes the provider serve an encrypted media blob at path (e.g. "/m/1") and
// returns its absolute URL, for a message's url field.
func (p *Provider) Host(path string, blob []byte) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blobs[path] = blob
	return p.URL + path
}

// MediaFetches counts the signed media fetches the provider served.
func (p *Provider) MediaFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.media
}

// SetToken makes token valid for the account JID (e.g. "1-491701234567@interop").
func (p *Provider) SetToken(account, token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[account] = token
}

// Pushes returns the push callbacks received so far.
func (p *Provider) Pushes() []Push {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Push(nil), p.pushes...)
}

// BadSignatures counts callbacks refused for their signature.
func (p *Provider) BadSignatures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bad
}

// Config is a simulator configuration for tests: in-memory database, both networks,
// EEA check on, every listener on a free 127.0.0.1 port, integrator IntegratorID
// pointing at the provider, and limits short enough for tests.
func Config(p *Provider) metasim.Config {
	cfg := metasim.DefaultConfig()
	cfg.DataDir = ""
	cfg.Database = metasim.MemoryDatabase
	cfg.Control.Listen = "127.0.0.1:0"
	cfg.Control.Token = Token
	cfg.Media.Listen = "127.0.0.1:0"
	cfg.Log.Level = "warn"
	for _, name := range metasim.Networks() {
		n := cfg.Network(name)
		n.Listen = "127.0.0.1:0"
		n.Integrators = []metasim.IntegratorConfig{{ID: IntegratorID, Name: "Test provider",
			CallbackBase: p.URL, MediaOrigin: p.URL, CallbackSecret: p.Secret}}
		n.Limits.PushInterval = metasim.Duration(100 * time.Millisecond)
		n.Limits.ReorderWindow = metasim.Duration(300 * time.Millisecond)
		n.Limits.HandshakeTimeout = metasim.Duration(5 * time.Second)
	}
	return cfg
}

// Env is a running simulator with its provider.
type Env struct {
	Sim      *metasim.Simulator
	Config   metasim.Config
	Provider *Provider
}

// Start runs a simulator until the test ends. The options adjust Config(provider).
func Start(tb testing.TB, opts ...func(*metasim.Config)) *Env {
	tb.Helper()
	p := NewProvider(tb)
	cfg := Config(p)
	for _, o := range opts {
		o(&cfg)
	}
	return StartWith(tb, p, cfg)
}

// StartWith runs a simulator with exactly cfg until the test ends (or until the
// caller closes it; closing twice is harmless).
func StartWith(tb testing.TB, p *Provider, cfg metasim.Config) *Env {
	tb.Helper()
	ctx := context.Background()
	log := zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	if _, fuzzing := tb.(*testing.F); fuzzing {
		// The test writer calls tb.Helper, which a *testing.F forbids once its fuzz
		// target runs: the simulator's goroutines would panic the fuzzing process.
		log = zerolog.New(os.Stderr).Level(zerolog.ErrorLevel)
	} else if cfg.Log.Level == "debug" {
		log = log.Level(zerolog.DebugLevel)
	}
	sim, err := metasim.New(ctx, cfg, log)
	if err != nil {
		tb.Fatalf("failed to set up the simulator: %v", err)
	}
	tb.Cleanup(func() { _ = sim.Close() })
	if err := sim.Start(ctx); err != nil {
		tb.Fatalf("failed to start the simulator: %v", err)
	}
	return &Env{Sim: sim, Config: cfg, Provider: p}
}

// Call makes one control API request with the test token and decodes a JSON answer
// into out (when out is not nil). It returns the HTTP status; a transport failure
// fails the test.
func (e *Env) Call(tb testing.TB, method, path string, body, out any) int {
	tb.Helper()
	return Call(tb, e.Sim.ControlURL(), Token, method, path, body, out)
}

// Call is Env.Call for a control API at baseURL with token (e.g. a separate process).
func Call(tb testing.TB, baseURL, token, method, path string, body, out any) int {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			tb.Fatalf("failed to encode the request: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, baseURL+path, rd)
	if err != nil {
		tb.Fatalf("failed to make the request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			tb.Fatalf("%s %s: answer %d is not the expected JSON: %v: %s", method, path, resp.StatusCode, err, truncate(data))
		}
	}
	return resp.StatusCode
}

// MustCall is Call that fails the test unless the status is want.
func (e *Env) MustCall(tb testing.TB, want int, method, path string, body, out any) {
	tb.Helper()
	var raw json.RawMessage
	status := e.Call(tb, method, path, body, &raw)
	if status != want {
		tb.Fatalf("%s %s = %d, want %d: %s", method, path, status, want, truncate(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			tb.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 500 {
		return fmt.Sprintf("%s… (%d bytes)", b[:500], len(b))
	}
	return string(b)
}
