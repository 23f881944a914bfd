package gateway

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// runner is an interop.Account running against the gateway, reporting what it
// decrypted.
type runner struct {
	acc      *interop.Account
	texts    chan string
	ready    chan struct{}
	readyOne sync.Once
}

func startAccount(t *testing.T, own jid.JID, dial interop.Dialer) *runner {
	t.Helper()
	st, err := memstore.NewAccount(own)
	mustNoErr(t, err)
	r := &runner{texts: make(chan string, 100), ready: make(chan struct{})}
	r.acc, err = interop.NewAccount(interop.AccountConfig{
		Client: interop.Config{Dial: dial, IQTimeout: waitLong},
		Store:  memstore.New(st),
		Log:    zerolog.Nop(),
		Handler: func(ctx context.Context, evt interop.Event) {
			switch e := evt.(type) {
			case *interop.PreKeysUploaded:
				r.readyOne.Do(func() { close(r.ready) })
			case *interop.IncomingMessage:
				_, err := r.acc.HandleMessage(ctx, e.Node, func(_ context.Context, m *interop.DecryptedMessage) error {
					if m.Message != nil {
						r.texts <- m.Message.GetConversation()
					}
					return nil
				})
				if err != nil {
					t.Errorf("%s: handling a message: %v", own, err)
				}
			case *interop.IncomingReceipt:
				_ = r.acc.Client().Ack(ctx, e.Node)
			case *interop.IncomingNotification:
				_ = r.acc.Client().Ack(ctx, e.Node)
			}
		},
	})
	mustNoErr(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.acc.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-r.ready:
	case <-time.After(waitLong):
		t.Fatalf("%s never uploaded its keys", own)
	}
	return r
}

func (r *runner) expectText(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-r.texts:
		if got != want {
			t.Fatalf("%s decrypted %q, want %q", r.acc.JID(), got, want)
		}
	case <-time.After(waitLong):
		t.Fatalf("%s decrypted nothing, want %q", r.acc.JID(), want)
	}
}

func text(s string) *waE2E.Message { return &waE2E.Message{Conversation: proto.String(s)} }

// TestEndToEnd_SignalSessions runs the project's own client (interop.Account, real
// Signal sessions) on both sides: a third-party account over WebSocket+Noise and a
// Meta user's two devices in-process. It checks that the gateway's device lists,
// bundles and phash agree with what the client computes, 1:1 and in groups, and that
// the client's strict parsers accept every answer of sections 5, 7 and 8, on SQLite
// and PostgreSQL.
func TestEndToEnd_SignalSessions(t *testing.T) {
	sqltest.Run(t, testEndToEnd)
}

func testEndToEnd(t *testing.T, db *dbutil.Database) {
	e := newEnvOn(t, db)
	ctx := context.Background()
	m := jid.New("491701111111", jid.ServerGateway)
	mustNoErr(t, e.g().CreateUser(ctx, m, UserOptions{ReadReceipts: true}))
	mustNoErr(t, e.g().SetOptIn(ctx, m, integratorID, true))
	d1, err := e.g().AddDevice(ctx, m)
	mustNoErr(t, err)
	deviceDialer := func(d jid.JID) interop.Dialer {
		return func(ctx context.Context) (interop.FrameConn, error) { return e.g().ConnectDevice(ctx, d) }
	}
	m0 := startAccount(t, m, deviceDialer(m))
	m1 := startAccount(t, d1, deviceDialer(d1))
	aJID := jid.Interop(integratorID, "491701234567")
	a := startAccount(t, aJID, interop.SocketDialer(socket.DialOptions{URL: e.url(), RootKey: e.root,
		Payload: e.payload("491701234567")}))

	if _, err := a.acc.SendMessage(ctx, m, "", text("hello"), interop.SendOptions{}); err != nil {
		t.Fatalf("1:1 send: %v", err)
	}
	m0.expectText(t, "hello")
	m1.expectText(t, "hello")
	if _, err := m1.acc.SendMessage(ctx, aJID, "", text("hi back"), interop.SendOptions{}); err != nil {
		t.Fatalf("reply: %v", err)
	}
	a.expectText(t, "hi back")

	answer, err := a.acc.Client().SendIQ(ctx, groupIQ("set", jid.ServerGroup, stanza.Node{Tag: "create",
		Attrs: stanza.Attrs{"subject": "E2E"}, Content: participants(m)}))
	mustNoErr(t, err)
	g, _ := answer.Child("group")
	group := jid.New(g.Attr("id"), jid.ServerGroup)
	members := []jid.JID{aJID, m}
	if _, err := a.acc.SendGroupMessage(ctx, group, members, "", text("to the group"), interop.SendOptions{}); err != nil {
		t.Fatalf("group send: %v", err)
	}
	m0.expectText(t, "to the group")
	m1.expectText(t, "to the group")
	if _, err := m0.acc.SendGroupMessage(ctx, group, members, "", text("group reply"), interop.SendOptions{}); err != nil {
		t.Fatalf("group reply: %v", err)
	}
	a.expectText(t, "group reply")
	select {
	case got := <-m1.texts:
		t.Fatalf("the sender's own device got its group message: %q", got)
	case <-time.After(waitShort):
	}

	// A device added later joins after its keys are up: the next send reaches it.
	d2, err := e.g().AddDevice(ctx, m)
	mustNoErr(t, err)
	m2 := startAccount(t, d2, deviceDialer(d2))
	if _, err := a.acc.SendMessage(ctx, m, "", text("three devices"), interop.SendOptions{}); err != nil {
		t.Fatalf("send after a device was added: %v", err)
	}
	for _, r := range []*runner{m0, m1, m2} {
		r.expectText(t, "three devices")
	}

	// The client's strict parsers accept the gateway's answers.
	c := a.acc.Client()
	devs, err := c.GetDevices(ctx, []jid.JID{m})
	if err != nil || len(devs[m]) != 3 {
		t.Fatalf("GetDevices: %v %v", devs, err)
	}
	contacts, err := c.LookupContacts(ctx, []string{"+491701111111", "+491709999999"})
	if err != nil || !contacts[0].In || contacts[0].JID != m || contacts[1].In {
		t.Fatalf("LookupContacts: %+v %v", contacts, err)
	}
	bundles, err := c.FetchPreKeys(ctx, []jid.JID{d1, m.WithDevice(9)})
	if err != nil || bundles[d1].Err != nil || bundles[m.WithDevice(9)].Err == nil {
		t.Fatalf("FetchPreKeys: %+v %v", bundles, err)
	}
	if n, err := c.PreKeyCount(ctx); err != nil || n == 0 {
		t.Fatalf("PreKeyCount: %d %v", n, err)
	}
	if mc, err := c.FetchMediaConn(ctx); err != nil || mc.Auth != "media-auth" {
		t.Fatalf("FetchMediaConn: %+v %v", mc, err)
	}
	if err := c.Block(ctx, m); err != nil {
		t.Fatalf("Block: %v", err)
	}
	if err := c.Unblock(ctx, m); err != nil {
		t.Fatalf("Unblock: %v", err)
	}
	if err := c.ReportSpam(ctx, []interop.SpamMessage{{ID: "X", From: m, T: time.Now()}}); err != nil {
		t.Fatalf("ReportSpam: %v", err)
	}
}
