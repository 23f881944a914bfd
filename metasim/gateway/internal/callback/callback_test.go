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

	icb "github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
)

// TestSection9_Callbacks runs auth and push against a fake provider that checks the
// signature.
func TestSection9_Callbacks(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1700000000, 0)
	var pushes []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := icb.Verify(secret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, now); err != nil {
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
