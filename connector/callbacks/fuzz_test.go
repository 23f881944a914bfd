package callbacks

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzCallbacks feeds correctly signed but arbitrary bodies to both JSON callbacks: the
// gateway's input is untrusted even when signed (a leaked secret), so the handler must
// answer every body without panicking, and never with success for a body that names no
// live token. Run it with -fuzzminimizetime 1s: every run touches SQLite, so the
// default minute of minimizing each new input looks like a stall.
func FuzzCallbacks(f *testing.F) {
	fx := newFixture(f)
	f.Add(true, []byte(authBody(waAccount, "x")))
	f.Add(false, []byte(`{"jid":"12-491701234567@interop","pending":1}`))
	f.Add(true, []byte(`{"jid":"12-@interop","token":"a"}`))
	f.Add(false, []byte(`{"jid":"12-1:65535@interop","pending":-5}`))
	f.Add(true, []byte(`{"jid":null,"token":[]}`))
	f.Add(false, []byte(`[`))
	f.Fuzz(func(t *testing.T, auth bool, body []byte) {
		path := PushPath
		if auth {
			path = AuthPath
		}
		w := httptest.NewRecorder()
		fx.h.ServeHTTP(w, signed("POST", path, string(body), waSecret, fx.now))
		switch w.Code {
		case http.StatusOK:
			if !auth || !strings.Contains(string(body), fx.waTok) {
				t.Fatalf("auth accepted without the live token: %q", body)
			}
		case http.StatusAccepted:
			if auth {
				t.Fatalf("auth answered 202")
			}
		case http.StatusUnauthorized, http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
	})
}
