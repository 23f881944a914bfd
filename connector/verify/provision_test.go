package verify

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	bridgedb "maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

func TestProvisioning(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		a := &Admin{DB: openDB(t, raw), Networks: []string{"whatsapp", "messenger"}}
		mux := http.NewServeMux()
		// Stands in for bridgev2's auth middleware: the test names the caller.
		a.RegisterRoutes(mux, func(r *http.Request) *bridgev2.User {
			mxid := id.UserID(r.Header.Get("X-Test-User"))
			return &bridgev2.User{User: &bridgedb.User{MXID: mxid}, Permissions: bridgeconfig.Permissions{Admin: mxid == admin}}
		})
		steps := []struct {
			caller       id.UserID
			method, path string
			body         string
			status       int
			want         []string // substrings of the answer
		}{
			{bob, "POST", "/v3/interop/numbers", `{"network":"whatsapp","number":"+491709999999","user_id":"@bob:example.org"}`, 403, []string{"M_FORBIDDEN"}},
			{bob, "GET", "/v3/interop/numbers", "", 403, []string{"M_FORBIDDEN"}},
			{bob, "DELETE", "/v3/interop/numbers/whatsapp/491701234567", "", 403, []string{"M_FORBIDDEN"}},
			{admin, "POST", "/v3/interop/numbers", `{"network":`, 400, []string{"M_NOT_JSON"}},
			{admin, "POST", "/v3/interop/numbers", `{"network":"telegram","number":"+491701234567","user_id":"@alice:example.org"}`, 400, []string{"M_INVALID_PARAM", "unknown network"}},
			{admin, "POST", "/v3/interop/numbers", `{"network":"whatsapp","number":"+15551234567","user_id":"@alice:example.org"}`, 400, []string{"not a number in the EEA"}},
			{admin, "POST", "/v3/interop/numbers", `{"network":"whatsapp","number":"+491701234567","user_id":"alice"}`, 400, []string{"invalid Matrix user ID"}},
			{admin, "POST", "/v3/interop/numbers", `{"network":"whatsapp","number":"+49 170 1234567","user_id":"@alice:example.org"}`, 200, []string{`"number":"491701234567"`, `"user_id":"@alice:example.org"`, `"assigned_by":"@admin:example.org"`}},
			{admin, "POST", "/v3/interop/numbers", `{"network":"whatsapp","number":"+491701234567","user_id":"@bob:example.org"}`, 409, []string{ErrCodeNumberTaken, `"user_id":"@alice:example.org"`}},
			{admin, "GET", "/v3/interop/numbers?for=@alice:example.org", "", 200, []string{`"network":"whatsapp"`, `"number":"491701234567"`, `"assigned_at":1700000000000`}},
			{admin, "GET", "/v3/interop/numbers", "", 200, []string{`{"numbers":[]}`}},
			{admin, "GET", "/v3/interop/numbers?for=nobody", "", 400, []string{"invalid Matrix user ID"}},
			{admin, "DELETE", "/v3/interop/numbers/whatsapp/abc", "", 400, []string{"invalid phone number"}},
			{admin, "DELETE", "/v3/interop/numbers/messenger/+491701234567", "", 200, []string{`"unassigned":false`}},
			{admin, "DELETE", "/v3/interop/numbers/whatsapp/+491701234567", "", 200, []string{`"unassigned":true`, `"user_id":"@alice:example.org"`}},
			{admin, "GET", "/v3/interop/numbers?for=@alice:example.org", "", 200, []string{`{"numbers":[]}`}},
		}
		for i, s := range steps {
			req := httptest.NewRequest(s.method, s.path, strings.NewReader(s.body))
			req.Header.Set("X-Test-User", string(s.caller))
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			body := strings.TrimSpace(rec.Body.String())
			if rec.Code != s.status {
				t.Errorf("step %d %s %s: HTTP %d %s, want %d", i, s.method, s.path, rec.Code, body, s.status)
			}
			if !json.Valid([]byte(body)) {
				t.Errorf("step %d: answer is not JSON: %q", i, body)
			}
			for _, w := range s.want {
				if !strings.Contains(body, w) {
					t.Errorf("step %d %s %s: answer %s lacks %s", i, s.method, s.path, body, w)
				}
			}
		}
	})
}
