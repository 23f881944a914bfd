package connector

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/callbacks"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// switchHandler lets a test swap the callback handler the simulator reaches.
type switchHandler struct{ h atomic.Pointer[http.Handler] }

func (s *switchHandler) set(h http.Handler) { s.h.Store(&h) }
func (s *switchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// revokingChecker revokes an account's tokens before checking one, as a logout on
// another bridge instance sharing the database would.
type revokingChecker struct{ db *bridgedb.Database }

func (r revokingChecker) CheckToken(ctx context.Context, network, account, token string) (bool, time.Time, error) {
	if _, err := r.db.RevokeTokens(ctx, network, account); err != nil {
		return false, time.Time{}, err
	}
	return r.db.CheckToken(ctx, network, account, token)
}

// queued records the remote events the clients would hand to bridgev2.
type queued struct{ events chan bridgev2.RemoteEvent }

func (q *queued) queue(_ *bridgev2.UserLogin, evt bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
	q.events <- evt
	return bridgev2.EventHandlingResultSuccess
}

func (q *queued) next(t *testing.T) *simplevent.Message[*waE2E.Message] {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case evt := <-q.events:
			switch msg := evt.(type) {
			case *simplevent.Message[*waE2E.Message]:
				return msg
			case *simplevent.Receipt, *simplevent.Typing:
				// The peer's receipts for what the test sent, and typing, come in
				// between.
			default:
				t.Fatalf("queued %T", evt)
			}
		case <-deadline:
			t.Fatal("no remote event queued")
			return nil
		}
	}
}

// A login against a real simulated gateway whose callbacks reach the connector's own
// handler: it connects with a minted token, uploads its keys, receives a Meta user's
// text, sends one back, is reconnected by a push while offline, is told plainly when
// the gateway rejects its token, and logs out.
func TestClientAgainstSimulator(t *testing.T) {
	sqltest.Run(t, testClientAgainstSimulator)
}

// simBridge is a bridge whose networks are a simulator's gateways, with the
// simulator's callbacks for both networks going to the connector's own handler.
type simBridge struct {
	env     *simtest.Env
	c       *InteropConnector
	br      *bridgev2.Bridge
	mx      *stubMatrix
	q       *queued
	sw      *switchHandler
	secrets map[string]string
}

func startSimBridge(t *testing.T, db *dbutil.Database) *simBridge {
	t.Helper()
	sb := &simBridge{sw: &switchHandler{}, q: &queued{events: make(chan bridgev2.RemoteEvent, 16)},
		secrets: map[string]string{"whatsapp": strings.Repeat("wa-s3cret-", 4), "messenger": strings.Repeat("msgr-s3cret-", 3)}}
	sb.sw.set(http.NotFoundHandler())
	srv := httptest.NewServer(sb.sw)
	t.Cleanup(srv.Close)
	p := simtest.NewProvider(t)
	simCfg := simtest.Config(p)
	for name, secret := range sb.secrets {
		in := &simCfg.Network(name).Integrators[0]
		in.CallbackBase, in.CallbackSecret = srv.URL, secret
	}
	sb.env = simtest.StartWith(t, p, simCfg)
	sb.c = newTestConnector(t, func(nc *config.NetworkConfig) {
		nc.Messenger = testSection(simtest.IntegratorID, "Messenger")
		for name, sec := range map[string]*config.NetworkSection{"whatsapp": &nc.WhatsApp, "messenger": &nc.Messenger} {
			sec.GatewayURL = sb.env.Sim.GatewayURL(name)
			sec.IntegratorID = simtest.IntegratorID
			sec.CallbackSecret = sb.secrets[name]
			sec.RootPublicKey = base64.StdEncoding.EncodeToString(sb.env.Sim.RootPublicKey(name))
		}
	})
	sb.c.queueRemoteEvent = sb.q.queue
	sb.br, sb.mx = newTestBridge(t, db, sb.c)
	mux := http.NewServeMux()
	sb.c.Callbacks.Mount(mux)
	sb.sw.set(mux)
	return sb
}

// login logs @alice in with number on network through the login flow.
func (sb *simBridge) login(t *testing.T, network, number string) {
	t.Helper()
	ctx := context.Background()
	alice, err := sb.br.GetUserByMXID(ctx, "@alice:test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	proc, _ := sb.c.CreateLogin(ctx, alice, LoginFlowIDPhoneNumber)
	if _, err := proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(ctx, map[string]string{"network": network, "phone_number": "+" + number}); err != nil {
		t.Fatal(err)
	}
}

// A Messenger login connects with the Messenger product and its own secret.
func TestMessengerLoginAgainstSimulator(t *testing.T) {
	sb := startSimBridge(t, sqltest.SQLite(t))
	sb.login(t, "messenger", "33612345678")
	waitState(t, sb.mx, "messenger:1-33612345678", status.StateConnected, "")
	var acc struct {
		Network string
		HasKeys bool `json:"has_keys"`
	}
	waitFor(t, "keys on the Messenger gateway", func() bool {
		return sb.env.Call(t, "GET", "/v1/accounts/1-33612345678@interop?network=messenger", nil, &acc) == 200 && acc.HasKeys
	})
	if acc.Network != "messenger" {
		t.Errorf("account on %q", acc.Network)
	}
}

func testClientAgainstSimulator(t *testing.T, db *dbutil.Database) {
	ctx := context.Background()
	sb := startSimBridge(t, db)
	env, c, br, mx, q, sw := sb.env, sb.c, sb.br, sb.mx, sb.q, sb.sw
	secret := sb.secrets["whatsapp"]

	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := string(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, mx, loginID, status.StateConnected, "")
	client := br.GetCachedUserLoginByID(networkid.UserLoginID(loginID)).Client.(*InteropClient)
	if !client.IsLoggedIn() || !client.IsConnected() {
		t.Fatal("connected client does not say so")
	}
	waitFor(t, "keys on the gateway", func() bool {
		var acc struct {
			HasKeys bool `json:"has_keys"`
		}
		return env.Call(t, "GET", "/v1/accounts/"+account.String()+"?network=whatsapp", nil, &acc) == 200 && acc.HasKeys
	})

	// A Meta user's text arrives as a message in a new portal of this login.
	var peer struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &peer)
	var sent struct{ ID string }
	env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": "hello *there*"}, &sent)
	msg := q.next(t)
	peerJID, _ := jid.Parse(peer.JID)
	if msg.PortalKey != ids.MakePortalKey(peerJID, networkid.UserLoginID(loginID)) || !msg.CreatePortal ||
		msg.Sender.Sender != networkid.UserID(peer.JID) || msg.Sender.IsFromMe || msg.ID != ids.MakeMessageID(peerJID, peerJID, sent.ID) {
		t.Errorf("remote event %+v", msg.EventMeta)
	}
	conv, err := msg.ConvertMessage(ctx, nil, nil)
	if err != nil || len(conv.Parts) != 1 || conv.Parts[0].Content.Body != "hello *there*" || !strings.Contains(conv.Parts[0].Content.FormattedBody, "<strong>there</strong>") {
		t.Fatalf("converted %+v, %v", conv.Parts[0].Content, err)
	}

	// A Matrix text reaches the Meta user's inbox.
	portal := &bridgev2.Portal{Portal: &database.Portal{PortalKey: msg.PortalKey}}
	resp, err := client.HandleMatrixMessage(ctx, &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "hi back"}, Portal: portal,
	}})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ids.ParseMessageID(resp.DB.ID)
	if err != nil || key.Chat != peerJID || key.Sender != account || resp.DB.SenderID != networkid.UserID(account.String()) || resp.DB.Timestamp.IsZero() {
		t.Fatalf("response %+v (%v)", resp.DB, err)
	}
	var inbox struct {
		Items []struct {
			ID   string
			Kind string
			Data struct{ Text string }
		}
	}
	env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID+"/inbox?since=0&wait=10s&kind=text&id="+key.StanzaID, nil, &inbox)
	if len(inbox.Items) == 0 || inbox.Items[0].Data.Text != "hi back" {
		t.Fatalf("inbox %+v", inbox)
	}

	// A Meta user who has not turned on third-party chats: a notice says so.
	var closed struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491705555555"}, &closed)
	closedJID, _ := jid.Parse(closed.JID)
	_, err = client.HandleMatrixMessage(ctx, &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "anyone?"},
		Portal:  &bridgev2.Portal{Portal: &database.Portal{PortalKey: ids.MakePortalKey(closedJID, networkid.UserLoginID(loginID))}},
	}})
	var ms bridgev2.MessageStatus
	if !errors.As(err, &ms) || !ms.SendNotice || !strings.Contains(ms.Message, "have not turned on third-party chats") {
		t.Fatalf("send to a closed user: %v", err)
	}
	t.Logf("refusal notice: %s (%v)", ms.Message, err)

	// Offline, a message makes the gateway push; the push reconnects the login and
	// the queued message arrives. The gateway pushes only for accounts it sees offline,
	// and a stanza pending at the disconnect (the peer's delivery receipt) may push
	// and reconnect first; then go offline again once it was handled.
	for attempt := 0; ; attempt++ {
		client.Disconnect()
		if client.IsLoggedIn() {
			t.Fatal("disconnected client claims to be logged in")
		}
		var offline bool
		waitFor(t, "the gateway to see the account offline, or a push", func() bool {
			var acc struct{ Connected bool }
			offline = env.Call(t, "GET", "/v1/accounts/"+account.String()+"?network=whatsapp", nil, &acc) == 200 && !acc.Connected
			return offline || client.IsLoggedIn()
		})
		if offline && !client.IsLoggedIn() {
			break
		} else if attempt == 5 {
			t.Fatal("the login never stayed offline")
		}
		waitState(t, mx, loginID, status.StateConnected, "")
	}
	drainStates(mx)
	env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": "while you were away"}, &sent)
	waitState(t, mx, loginID, status.StateConnected, "")
	if msg := q.next(t); msg.ID != ids.MakeMessageID(peerJID, peerJID, sent.ID) {
		t.Errorf("after the push got %s", msg.ID)
	}

	// Another connection for the account takes over: the login reports it and does not
	// fight back.
	token, _, err := c.DB.MintToken(ctx, "whatsapp", account.String(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	product := waWa6.ClientPayload_INTEROP
	other := interop.NewClient(interop.Config{
		Dial: interop.SocketDialer(socket.DialOptions{URL: env.Sim.GatewayURL("whatsapp"), RootKey: env.Sim.RootPublicKey("whatsapp"),
			Payload: &waWa6.ClientPayload{Username: proto.Uint64(491701234567), Device: proto.Uint32(0), Product: &product,
				InteropData: &waWa6.ClientPayload_InteropData{AccountID: proto.Uint64(simtest.IntegratorID), Token: []byte(token)}}}),
		Handler: func(context.Context, interop.Event) {},
	})
	otherCtx, stopOther := context.WithCancel(ctx)
	otherDone := make(chan struct{})
	go func() {
		defer close(otherDone)
		_ = other.Run(otherCtx)
	}()
	st := waitState(t, mx, loginID, status.StateUnknownError, StateReplaced)
	if st.Message != msgReplaced {
		t.Errorf("message %q", st.Message)
	}
	waitFor(t, "the replaced run loop to stop", func() bool { return !client.IsLoggedIn() })
	// The gateway may answer the new connection after telling the old one; once it is
	// live it stays live, since the bridge does not reconnect.
	waitFor(t, "the connection that took over", other.IsConnected)
	time.Sleep(300 * time.Millisecond)
	if !other.IsConnected() || client.IsLoggedIn() {
		t.Error("the bridge fought the connection that took over")
	}
	stopOther()
	<-otherDone

	// The gateway rejects a revoked token: the login says to sign in again and stops.
	rejecting, err := callbacks.New(callbacks.Config{
		Networks: []callbacks.Network{{Name: "whatsapp", IntegratorID: simtest.IntegratorID, Secret: []byte(secret)}},
		Tokens:   revokingChecker{c.DB}, Pusher: c, Log: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	sw.set(rejecting)
	client.Connect(ctx)
	st = waitState(t, mx, loginID, status.StateBadCredentials, StateTokenRejected)
	if st.Message != msgTokenRejected {
		t.Errorf("message %q", st.Message)
	}
	waitFor(t, "run loop to stop", func() bool { return !client.IsLoggedIn() })

	// Logging out revokes the tokens and deletes the Signal identity.
	client.LogoutRemote(ctx)
	if _, err := c.Store.GetAccount(ctx, account); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Signal account after logout: %v", err)
	}
}

func drainStates(mx *stubMatrix) {
	for {
		select {
		case <-mx.states:
		default:
			return
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in time", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
