package callback

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSection9_Sign pins the signature format: sha256= and the hex HMAC-SHA256 of
// timestamp, newline, body.
func TestSection9_Sign(t *testing.T) {
	// HMAC-SHA256("secret", "1700000000\n{}"), computed with Python's hmac module.
	got := Sign([]byte("secret"), "1700000000", []byte("{}"))
	const want = "sha256=346a8f68fec04c9eee008b1bb9797f79920c7c67fdc75c2c67108852e95a3505"
	if got != want {
		t.Fatalf("signature %q, want %q", got, want)
	}
	now := time.Unix(1700000000, 0)
	if err := Verify([]byte("secret"), "1700000000", got, []byte("{}"), now, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		secret, ts, body string
		now              time.Time
	}{
		"other secret": {"other", "1700000000", "{}", now},
		"other body":   {"secret", "1700000000", "{ }", now},
		"stale":        {"secret", "1700000000", "{}", now.Add(6 * time.Minute)},
		"bad ts":       {"secret", "x", "{}", now},
	} {
		if err := Verify([]byte(tc.secret), tc.ts, got, []byte(tc.body), tc.now, 5*time.Minute); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// TestSection9_Callbacks runs auth and push against a fake provider that checks the
// signature.
func TestSection9_Callbacks(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1700000000, 0)
	var pushes []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, now, 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var req map[string]any
		_ = json.Unmarshal(body, &req)
		switch r.URL.Path {
		case AuthPath:
			switch req["token"] {
			case "good":
				_, _ = w.Write([]byte(`{"valid":true,"expires_at":1700003600}`))
			case "false":
				_, _ = w.Write([]byte(`{"valid":false}`))
			case "broken":
				w.WriteHeader(http.StatusInternalServerError)
			default:
				w.WriteHeader(http.StatusUnauthorized)
			}
		case PushPath:
			pushes = append(pushes, req)
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := &Client{HTTP: srv.Client(), Now: func() time.Time { return now }}
	ctx := context.Background()
	exp, err := c.Auth(ctx, srv.URL+"/", secret, "1-4917@interop", "good")
	if err != nil || exp.Unix() != 1700003600 {
		t.Fatalf("good token: %v %v", exp, err)
	}
	for _, tok := range []string{"bad", "false"} {
		if _, err := c.Auth(ctx, srv.URL, secret, "1-4917@interop", tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("token %q: %v, want ErrInvalidToken", tok, err)
		}
	}
	if _, err := c.Auth(ctx, srv.URL, secret, "1-4917@interop", "broken"); err == nil || errors.Is(err, ErrInvalidToken) {
		t.Errorf("provider trouble: %v, want a non-token error", err)
	}
	if _, err := c.Auth(ctx, srv.URL, []byte("wrong secret"), "1-4917@interop", "good"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("wrongly signed request: %v", err)
	}
	if err := c.Push(ctx, srv.URL, secret, "1-4917@interop", 3); err != nil {
		t.Fatal(err)
	}
	if len(pushes) != 1 || pushes[0]["jid"] != "1-4917@interop" || pushes[0]["pending"] != float64(3) {
		t.Fatalf("pushes %v", pushes)
	}
}
