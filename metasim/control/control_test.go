package control_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/control"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

type apiErr struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

// every route, for the auth check.
var routes = []struct{ method, path string }{
	{"GET", "/v1/status"},
	{"POST", "/v1/users"},
	{"GET", "/v1/users"},
	{"GET", "/v1/users/491701111111@s.whatsapp.net"},
	{"PATCH", "/v1/users/491701111111@s.whatsapp.net"},
	{"POST", "/v1/users/491701111111@s.whatsapp.net/devices"},
	{"DELETE", "/v1/users/491701111111@s.whatsapp.net/devices/491701111111:1@s.whatsapp.net"},
	{"PUT", "/v1/users/491701111111@s.whatsapp.net/opt-in"},
	{"POST", "/v1/users/491701111111@s.whatsapp.net/restrict"},
	{"GET", "/v1/groups"},
	{"GET", "/v1/accounts"},
	{"GET", "/v1/connections"},
	{"POST", "/v1/faults"},
	{"DELETE", "/v1/faults"},
	{"POST", "/v1/media/faults"},
	{"GET", "/v1/nonexistent"},
}

func TestAuthRefusals(t *testing.T) {
	env := simtest.Start(t)
	base := env.Sim.ControlURL()
	for _, r := range routes {
		for name, token := range map[string]string{"none": "", "wrong": "not-the-token", "prefix": simtest.Token[:10]} {
			var e apiErr
			code := simtest.Call(t, base, token, r.method, r.path, nil, &e)
			if code != http.StatusUnauthorized || e.Code != 401 || e.Error == "" {
				t.Errorf("%s %s with %s token = %d %+v, want 401", r.method, r.path, name, code, e)
			}
		}
	}
	// The token must come as a bearer token, not in some other scheme.
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/status", nil)
	req.Header.Set("Authorization", "Basic "+simtest.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("Basic auth = %d (WWW-Authenticate %q)", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestStatus(t *testing.T) {
	env := simtest.Start(t)
	var st control.Status
	env.MustCall(t, 200, "GET", "/v1/status", nil, &st)
	if st.Control != env.Sim.Addrs().Control || st.Media == "" || len(st.Networks) != 2 {
		t.Fatalf("status = %+v", st)
	}
	wa := st.Networks[0]
	if wa.Name != "whatsapp" || wa.Server != jid.ServerGateway || wa.GatewayURL != env.Sim.GatewayURL("whatsapp") ||
		!wa.RootPublicKey.Equal(env.Sim.RootPublicKey("whatsapp")) || len(wa.Integrators) != 1 {
		t.Errorf("whatsapp status = %+v", wa)
	}
	if st.Networks[1].Server != jid.ServerMessenger {
		t.Errorf("messenger status = %+v", st.Networks[1])
	}
	var e apiErr
	if code := env.Call(t, "GET", "/v1/nope", nil, &e); code != 404 || e.Code != 404 {
		t.Errorf("unknown endpoint = %d %+v", code, e)
	}
	if code := env.Call(t, "DELETE", "/v1/status", nil, &e); code != 405 && code != 404 {
		t.Errorf("wrong method = %d", code)
	}
}

// createDirectly makes a Meta user through the gateway, for the directory endpoints.
func createDirectly(t *testing.T, env *simtest.Env, user jid.JID) {
	t.Helper()
	gw := env.Sim.Gateway("whatsapp")
	if user.Server == jid.ServerMessenger {
		gw = env.Sim.Gateway("messenger")
	}
	if err := gw.CreateUser(context.Background(), user, gateway.UserOptions{Name: "Test"}); err != nil {
		t.Fatal(err)
	}
}

func TestDirectoryEndpoints(t *testing.T) {
	env := simtest.Start(t)
	u := jid.New("491701111111", jid.ServerGateway)
	createDirectly(t, env, u)
	m := jid.New("100001", jid.ServerMessenger)
	createDirectly(t, env, m)
	path := "/v1/users/" + u.String()

	var list struct{ Users []control.UserView }
	env.MustCall(t, 200, "GET", "/v1/users", nil, &list)
	if len(list.Users) != 2 || list.Users[0].JID != u || list.Users[1].Network != "messenger" {
		t.Fatalf("users = %+v", list.Users)
	}
	env.MustCall(t, 200, "GET", "/v1/users?network=messenger", nil, &list)
	if len(list.Users) != 1 || list.Users[0].JID != m {
		t.Fatalf("messenger users = %+v", list.Users)
	}

	var v control.UserView
	env.MustCall(t, 200, "GET", path, nil, &v)
	if v.JID != u || v.Name != "Test" || !v.EEA || len(v.Devices) != 1 || len(v.OptIn) != 0 {
		t.Fatalf("user = %+v", v)
	}
	env.MustCall(t, 200, "PATCH", path, map[string]any{"name": "Renamed", "read_receipts": true}, &v)
	if v.Name != "Renamed" || !v.ReadReceipts {
		t.Fatalf("after PATCH = %+v", v)
	}
	env.MustCall(t, 200, "PUT", path+"/opt-in", map[string]any{"integrators": []int{simtest.IntegratorID}}, &v)
	if len(v.OptIn) != 1 || v.OptIn[0] != simtest.IntegratorID {
		t.Fatalf("after opt-in = %+v", v)
	}
	env.MustCall(t, 200, "PUT", path+"/opt-in", map[string]any{"integrators": []int{}}, &v)
	if len(v.OptIn) != 0 {
		t.Fatalf("after opt-out = %+v", v)
	}
	env.MustCall(t, 200, "POST", path+"/restrict", map[string]any{"duration": "1h"}, nil)
	env.MustCall(t, 200, "GET", path, nil, &v)
	if v.Restricted == nil || v.Restricted.Reason != "spam" {
		t.Fatalf("after restrict = %+v", v)
	}
	env.MustCall(t, 200, "DELETE", path+"/restrict", nil, nil)
	v = control.UserView{}
	env.MustCall(t, 200, "GET", path, nil, &v)
	if v.Restricted != nil {
		t.Fatalf("after unrestrict = %+v", v)
	}

	bad := []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/v1/users/not-a-jid", nil, 400},
		{"GET", "/v1/users/491709999999@s.whatsapp.net", nil, 404},
		{"GET", "/v1/users/1-491701234567@interop", nil, 400},
		{"GET", "/v1/users?network=telegram", nil, 400},
		{"PATCH", path, `{"name": 5}`, 400},
		{"PATCH", path, `{"nmae": "x"}`, 400},
		{"PATCH", path, `{"name": "x"} trailing`, 400},
		{"PATCH", path, ``, 400},
		{"PATCH", path, `{"phone": "abc"}`, 400},
		{"PUT", path + "/opt-in", `{"integrators": [7]}`, 400},
		{"PUT", path + "/opt-in", `{}`, 400},
		{"PUT", path + "/opt-in", `{"integrators": [70000]}`, 400},
		{"POST", path + "/restrict", `{"duration": "-1h"}`, 400},
		{"PUT", "/v1/users/491709999999@s.whatsapp.net/opt-in", `{"integrators": []}`, 404},
	}
	for _, b := range bad {
		var e apiErr
		code := env.Call(t, b.method, b.path, b.body, &e)
		if code != b.want || e.Code != b.want || e.Error == "" {
			t.Errorf("%s %s %v = %d %+v, want %d", b.method, b.path, b.body, code, e, b.want)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	env := simtest.Start(t)
	u := jid.New("491701111111", jid.ServerGateway)
	createDirectly(t, env, u)
	huge := `{"name": "` + strings.Repeat("x", control.DefaultMaxBody+10) + `"}`
	var e apiErr
	if code := env.Call(t, "PATCH", "/v1/users/"+u.String(), huge, &e); code != http.StatusRequestEntityTooLarge || e.Code != 413 {
		t.Fatalf("huge body = %d %+v, want 413", code, e)
	}
	// The simulator is still fine afterwards.
	env.MustCall(t, 200, "GET", "/v1/status", nil, nil)
}

func TestFaultEndpoints(t *testing.T) {
	env := simtest.Start(t)
	u := jid.New("491701111111", jid.ServerGateway)
	createDirectly(t, env, u)
	account := jid.Interop(simtest.IntegratorID, "491701234567")
	ok := []map[string]any{
		{"endpoint": u.String(), "kind": "drop"},
		{"endpoint": u.String(), "kind": "delay", "delay": "250ms"},
		{"endpoint": u.String(), "kind": "delay", "delay": "0"},
		{"endpoint": u.String(), "kind": "duplicate", "count": 2},
		{"endpoint": u.String(), "kind": "reorder", "count": 3},
		{"endpoint": account.String(), "kind": "refuse", "count": 2, "code": 429},
		{"endpoint": account.String(), "network": "messenger", "kind": "refuse", "code": 503, "reason": "test"},
		{"endpoint": account.String(), "kind": "stop_pings"},
		{"endpoint": account.String(), "kind": "start_pings"},
	}
	for _, body := range ok {
		var out map[string]any
		env.MustCall(t, 200, "POST", "/v1/faults", body, &out)
		if out["kind"] != body["kind"] {
			t.Errorf("fault answer %v", out)
		}
	}
	var out map[string]any
	env.MustCall(t, 200, "POST", "/v1/faults", map[string]any{"endpoint": u.String(), "kind": "drop"}, &out)
	if out["dropped"] != false {
		t.Errorf("dropping an unconnected endpoint reported %v", out["dropped"])
	}
	env.MustCall(t, 200, "DELETE", "/v1/faults?endpoint="+account.String(), nil, nil)

	bad := []map[string]any{
		{"endpoint": u.String(), "kind": "explode"},
		{"endpoint": u.String()},
		{"endpoint": "nonsense", "kind": "drop"},
		{"endpoint": "123-1@g.us", "kind": "drop"},
		{"endpoint": u.String(), "kind": "refuse", "code": 200},
		{"endpoint": u.String(), "kind": "delay", "delay": "a while"},
		{"endpoint": u.String(), "kind": "delay", "delay": "3h"},
		{"endpoint": u.String(), "kind": "duplicate"},
		{"endpoint": u.String(), "kind": "duplicate", "count": -1},
		{"endpoint": u.String(), "network": "messenger", "kind": "drop"},
		{"endpoint": account.String(), "network": "icq", "kind": "drop"},
	}
	for _, body := range bad {
		var e apiErr
		if code := env.Call(t, "POST", "/v1/faults", body, &e); code != 400 || e.Code != 400 {
			t.Errorf("POST /v1/faults %v = %d %+v, want 400", body, code, e)
		}
	}
	var e apiErr
	if code := env.Call(t, "DELETE", "/v1/faults", nil, &e); code != 400 {
		t.Errorf("DELETE /v1/faults without endpoint = %d", code)
	}

	// Media faults.
	env.MustCall(t, 200, "POST", "/v1/media/faults", map[string]any{"fault": "unavailable"}, &out)
	if out["fault"] != "unavailable" {
		t.Errorf("media fault answer %v", out)
	}
	resp, err := http.Get("http://" + env.Sim.Addrs().Media + "/any")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("media host under the unavailable fault answered %d", resp.StatusCode)
	}
	env.MustCall(t, 200, "DELETE", "/v1/media/faults", nil, nil)
	resp, err = http.Get("http://" + env.Sim.Addrs().Media + "/any")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("media host after clearing answered %d, want 401 (no token)", resp.StatusCode)
	}
	for _, body := range []string{`{"fault": "melt"}`, `{"fault": "corrupt", "direct_path": "x"}`, `[]`} {
		if code := env.Call(t, "POST", "/v1/media/faults", body, &e); code != 400 {
			t.Errorf("POST /v1/media/faults %s = %d, want 400", body, code)
		}
	}
}

func TestAccountsAndGroupsEmpty(t *testing.T) {
	env := simtest.Start(t)
	var accounts struct{ Accounts []control.AccountView }
	env.MustCall(t, 200, "GET", "/v1/accounts", nil, &accounts)
	if accounts.Accounts == nil || len(accounts.Accounts) != 0 {
		t.Errorf("accounts = %+v, want []", accounts.Accounts)
	}
	var groups struct{ Groups []control.GroupView }
	env.MustCall(t, 200, "GET", "/v1/groups", nil, &groups)
	if groups.Groups == nil || len(groups.Groups) != 0 {
		t.Errorf("groups = %+v", groups.Groups)
	}
	var e apiErr
	for path, want := range map[string]int{
		"/v1/accounts/1-491701234567@interop":           404,
		"/v1/accounts/491701234567@s.whatsapp.net":      400,
		"/v1/groups/123-456@g.us":                       404,
		"/v1/groups/491701234567@s.whatsapp.net":        400,
		"/v1/accounts?network=nope":                     400,
		"/v1/groups?network=nope":                       400,
		"/v1/accounts/1-491701234567@interop?network=x": 400,
	} {
		if code := env.Call(t, "GET", path, nil, &e); code != want || e.Code != want {
			t.Errorf("GET %s = %d %+v, want %d", path, code, e, want)
		}
	}
}

// TestAccountsWithLiveClient logs a raw third-party client in and inspects and breaks
// its connection through the API.
func TestAccountsWithLiveClient(t *testing.T) {
	env := simtest.Start(t)
	tp := env.StartThirdParty(t, simtest.ThirdPartyOptions{Number: "491701234567", Store: memStore(t, "491701234567")})

	var a control.AccountView
	env.MustCall(t, 200, "GET", "/v1/accounts/"+tp.JID.String(), nil, &a)
	if a.JID != tp.JID || !a.Connected || !a.HasKeys || a.Integrator != simtest.IntegratorID || a.Network != "whatsapp" {
		t.Fatalf("account = %+v", a)
	}
	var conns struct{ Connections []control.ConnectionView }
	env.MustCall(t, 200, "GET", "/v1/connections", nil, &conns)
	if len(conns.Connections) != 1 || conns.Connections[0].Endpoint != tp.JID || !conns.Connections[0].ThirdParty {
		t.Fatalf("connections = %+v", conns.Connections)
	}
	// The account is on WhatsApp only.
	var e apiErr
	if code := env.Call(t, "GET", "/v1/accounts/"+tp.JID.String()+"?network=messenger", nil, &e); code != 404 {
		t.Errorf("account on messenger = %d", code)
	}

	var out map[string]any
	env.MustCall(t, 200, "POST", "/v1/faults", map[string]any{"endpoint": tp.JID.String(), "kind": "drop"}, &out)
	if out["dropped"] != true {
		t.Fatalf("drop answer = %v", out)
	}
	// The client notices and comes back by itself.
	deadline := time.Now().Add(10 * time.Second)
	for {
		env.MustCall(t, 200, "GET", "/v1/accounts/"+tp.JID.String(), nil, &a)
		if tp.Connects() == 2 && a.Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("account did not reconnect after the drop: %+v", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func memStore(t testing.TB, number string) store.Store {
	t.Helper()
	acc, err := memstore.NewAccount(jid.Interop(simtest.IntegratorID, number))
	if err != nil {
		t.Fatal(err)
	}
	return memstore.New(acc)
}
