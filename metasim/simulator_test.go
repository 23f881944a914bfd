package metasim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/control"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

func TestMain(m *testing.M) {
	signal.RouteLibraryLogs(zerolog.Nop())
	os.Exit(m.Run())
}

const waitLong = 15 * time.Second

type inbox struct {
	Items []simuser.Item `json:"items"`
	Next  int64          `json:"next"`
}

// nextText long-polls a user's inbox for the next text item after since.
func nextText(t *testing.T, env *simtest.Env, user jid.JID, since int64) (simuser.Item, int64) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for time.Now().Before(deadline) {
		var in inbox
		env.MustCall(t, 200, "GET", "/v1/users/"+user.String()+"/inbox?kind=text&wait=5s&since="+strconv.FormatInt(since, 10), nil, &in)
		if len(in.Items) > 0 {
			return in.Items[0], in.Items[0].Seq
		}
	}
	t.Fatalf("%s received no text", user)
	return simuser.Item{}, 0
}

// TestRestartKeepsSessions exchanges messages between a simulated user and a raw
// third-party client (interop.Account over sqlstore, with the fake provider's auth
// callback), closes the simulator, starts a new one on the same SQLite data dir, and
// checks that both sides go on with the sessions they had: the next messages are
// msg, not new pkmsg, the inbox survived, and the gateway's keys did not change (the
// client checks the certificate chain against the root key of the first run).
func TestRestartKeepsSessions(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRestart(t, "") })
	t.Run("postgres", func(t *testing.T) { testRestart(t, simtest.PostgresDSN(t)) })
}

// testRestart runs the restart on SQLite in the data dir (database "") or on
// PostgreSQL; the keys live in the data dir either way.
func testRestart(t *testing.T, database string) {
	p := simtest.NewProvider(t)
	cfg := simtest.Config(p)
	cfg.DataDir, cfg.Database = t.TempDir(), database
	var cur atomic.Pointer[simtest.Env]
	cur.Store(simtest.StartWith(t, p, cfg))
	env := cur.Load()

	var u control.UserView
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491701111111", "opt_in": []int{simtest.IntegratorID}}, &u)

	// The provider's side keeps its Signal state in its own SQLite database.
	const number = "491701234567"
	container := sqlstore.New(sqltest.SQLite(t), zerolog.Nop())
	ctx := context.Background()
	if err := container.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	acc, err := container.CreateAccount(ctx, jid.Interop(simtest.IntegratorID, number))
	if err != nil {
		t.Fatal(err)
	}
	tp := env.StartThirdParty(t, simtest.ThirdPartyOptions{Number: number, Store: container.StoreFor(acc),
		GatewayURL: func() string { return cur.Load().Sim.GatewayURL("whatsapp") }})

	send := func(text string) {
		t.Helper()
		msg := &waE2E.Message{Conversation: proto.String(text)}
		if _, err := tp.Acc.SendMessage(ctx, u.JID, "", msg, interop.SendOptions{}); err != nil {
			t.Fatalf("third party sending %q: %v", text, err)
		}
	}
	reply := func(text string) simtest.Received {
		t.Helper()
		cur.Load().MustCall(t, 200, "POST", "/v1/users/"+u.JID.String()+"/messages",
			map[string]any{"to": tp.JID.String(), "kind": "text", "text": text}, nil)
		r := tp.Next(t, waitLong)
		if r.Message.GetConversation() != text {
			t.Fatalf("third party got %+v, want %q", r, text)
		}
		return r
	}

	send("one")
	it, since := nextText(t, env, u.JID, 0)
	if it.Data.Text != "one" || it.Data.EncType != "pkmsg" {
		t.Fatalf("first message = %+v, want a pkmsg", it)
	}
	if r := reply("two"); r.EncType != "msg" {
		t.Fatalf("reply on the session = %s, want msg", r.EncType)
	}
	send("three")
	if it, since = nextText(t, env, u.JID, since); it.Data.Text != "three" || it.Data.EncType != "msg" {
		t.Fatalf("before the restart = %+v, want a msg", it)
	}

	rootBefore := env.Sim.RootPublicKey("whatsapp")
	if err := env.Sim.Close(); err != nil {
		t.Fatalf("closing the simulator: %v", err)
	}
	waitFor(t, "the client to notice the simulator is gone", func() bool { return !tp.Acc.Client().IsConnected() })

	cur.Store(simtest.StartWith(t, p, cfg))
	env = cur.Load()
	if !env.Sim.RootPublicKey("whatsapp").Equal(rootBefore) {
		t.Fatal("the root key changed across the restart")
	}
	tp.WaitConnected(t, waitLong)
	var after control.UserView
	env.MustCall(t, 200, "GET", "/v1/users/"+u.JID.String(), nil, &after)
	waitFor(t, "the simulated device to reconnect", func() bool {
		env.MustCall(t, 200, "GET", "/v1/users/"+u.JID.String(), nil, &after)
		return len(after.DeviceStatus) == 1 && after.DeviceStatus[0].Connected
	})
	if len(after.OptIn) != 1 {
		t.Fatalf("the user's opt-in did not survive: %+v", after)
	}

	send("four")
	if it, _ = nextText(t, env, u.JID, since); it.Data.Text != "four" || it.Data.EncType != "msg" {
		t.Fatalf("after the restart = %+v, want a msg on the old session", it)
	}
	if r := reply("five"); r.EncType != "msg" {
		t.Fatalf("reply after the restart = %s, want msg", r.EncType)
	}
	var all inbox
	env.MustCall(t, 200, "GET", "/v1/users/"+u.JID.String()+"/inbox?kind=text", nil, &all)
	if len(all.Items) != 3 || all.Items[0].Data.Text != "one" {
		t.Fatalf("inbox after the restart = %+v, want one, three, four", all.Items)
	}
	var accounts struct{ Accounts []control.AccountView }
	env.MustCall(t, 200, "GET", "/v1/accounts", nil, &accounts)
	if len(accounts.Accounts) != 1 || !accounts.Accounts[0].HasKeys || !accounts.Accounts[0].Connected {
		t.Fatalf("accounts after the restart = %+v", accounts.Accounts)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCloseEndsLongPolls checks a shutdown does not wait for inbox long-polls: they
// are answered (empty) at once and Close returns promptly.
func TestCloseEndsLongPolls(t *testing.T) {
	env := simtest.Start(t)
	var u control.UserView
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491701111111"}, &u)
	type result struct {
		status int
		in     inbox
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() { done <- r }()
		req, _ := http.NewRequest("GET", env.Sim.ControlURL()+"/v1/users/"+u.JID.String()+"/inbox?wait=100s", nil)
		req.Header.Set("Authorization", "Bearer "+simtest.Token)
		resp, err := http.DefaultClient.Do(req)
		if r.err = err; err != nil {
			return
		}
		defer resp.Body.Close()
		r.status, r.err = resp.StatusCode, json.NewDecoder(resp.Body).Decode(&r.in)
	}()
	time.Sleep(300 * time.Millisecond) // let the poll start waiting
	start := time.Now()
	if err := env.Sim.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %s with a long-poll open", d)
	}
	select {
	case r := <-done:
		if r.err != nil || r.status != 200 || len(r.in.Items) != 0 {
			t.Errorf("cut long-poll answered %d %+v", r.status, r.in)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long-poll was not answered at shutdown")
	}
}
