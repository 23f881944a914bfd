package connector

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// replyRecorder is the bridge bot for command tests: it keeps the notices sent.
type replyRecorder struct {
	bridgev2.MatrixAPI
	replies []string
}

func (r *replyRecorder) SendMessage(_ context.Context, _ id.RoomID, _ event.Type, content *event.Content, _ *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	r.replies = append(r.replies, content.Parsed.(*event.MessageEventContent).Body)
	return &mautrix.RespSendEvent{EventID: "$reply"}, nil
}

// noMessage asserts that no message is queued within d; receipts and typing may be.
func (q *queued) noMessage(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case evt := <-q.events:
			if msg, ok := evt.(interface{ GetID() networkid.MessageID }); ok {
				t.Fatalf("message %s arrived", msg.GetID())
			}
		case <-deadline:
			return
		}
	}
}

// Blocking a contact on a real simulated gateway stops its messages while ours
// still go out, unblocking lets them through again, and a report names the
// contact's bridged messages so that the gateway counts it towards a restriction.
func TestSafetyAgainstSimulator(t *testing.T) {
	sb := startSimBridge(t, sqltest.SQLite(t))
	ctx := context.Background()
	env, q := sb.env, sb.q
	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := networkid.UserLoginID(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	client := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)
	waitFor(t, "keys on the gateway", func() bool {
		var acc struct {
			HasKeys bool `json:"has_keys"`
		}
		return env.Call(t, "GET", "/v1/accounts/"+account.String()+"?network=whatsapp", nil, &acc) == 200 && acc.HasKeys
	})

	var peer struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &peer)
	peerJID, _ := jid.Parse(peer.JID)
	portal, err := sb.br.GetPortalByKey(ctx, ids.MakePortalKey(peerJID, loginID))
	if err != nil {
		t.Fatal(err)
	}
	var sent struct{ ID string }
	peerSends := func(text string) {
		t.Helper()
		env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": text}, &sent)
	}
	weSend := func(text string) {
		t.Helper()
		resp, err := client.HandleMatrixMessage(ctx, &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
			Content: &event.MessageEventContent{MsgType: event.MsgText, Body: text}, Portal: portal,
		}})
		if err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
		key, _ := ids.ParseMessageID(resp.DB.ID)
		var inbox struct {
			Items []struct{ Data struct{ Text string } }
		}
		env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID+"/inbox?since=0&wait=10s&kind=text&id="+key.StanzaID, nil, &inbox)
		if len(inbox.Items) == 0 || inbox.Items[0].Data.Text != text {
			t.Fatalf("inbox for %q: %+v", text, inbox)
		}
	}
	peerSends("first")
	if msg := q.next(t); msg.ID != ids.MakeMessageID(peerJID, peerJID, sent.ID) {
		t.Fatalf("got %s", msg.ID)
	}

	// Blocked (through bridgev2's block event): the contact's message is dropped,
	// ours still go out.
	if err := client.HandleMatrixBlockUser(ctx, &bridgev2.MatrixBlockUser{Content: &event.BeeperBlockUserEventContent{Block: true}, Portal: portal}); err != nil {
		t.Fatal(err)
	}
	peerSends("while blocked")
	q.noMessage(t, 1500*time.Millisecond)
	weSend("still reachable")

	// Unblocked: messages flow again.
	if err := client.UnblockContact(ctx, portal); err != nil {
		t.Fatal(err)
	}
	peerSends("after unblock")
	if msg := q.next(t); msg.ID != ids.MakeMessageID(peerJID, peerJID, sent.ID) {
		t.Fatalf("after unblock got %s", msg.ID)
	}

	// Report: nothing bridged yet is a plain error.
	if _, err := client.ReportContact(ctx, portal); !errors.Is(err, errNothingToSend) {
		t.Fatalf("report without messages: %v", err)
	}
	// Bridged messages: ours and an unparseable ID are skipped, a multi-part
	// message counts once, and at most reportedMessages are named.
	for _, ghost := range []networkid.UserID{networkid.UserID(peer.JID), networkid.UserID(account.String())} {
		if err := sb.br.DB.Ghost.Insert(ctx, &database.Ghost{ID: ghost}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	insert := func(mid networkid.MessageID, part networkid.PartID, sender networkid.UserID, ts time.Time) {
		t.Helper()
		err := sb.br.DB.Message.Insert(ctx, &database.Message{ID: mid, PartID: part, Room: portal.PortalKey, SenderID: sender,
			MXID: id.EventID("$evt" + string(mid) + string(part) + ":test.invalid"), Timestamp: ts})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, sid := range []string{"P1", "P2", "P3", "P4", "P5", "P6"} {
		insert(ids.MakeMessageID(peerJID, peerJID, sid), "", networkid.UserID(peer.JID), now.Add(time.Duration(i)*time.Second))
	}
	insert(ids.MakeMessageID(peerJID, peerJID, "P6"), "1", networkid.UserID(peer.JID), now.Add(7*time.Second))
	insert(ids.MakeMessageID(peerJID, account, "OURS"), "", networkid.UserID(account.String()), now.Add(8*time.Second))
	insert("garbage", "", networkid.UserID(peer.JID), now.Add(9*time.Second))
	msgs, err := client.contactMessages(ctx, portal, peerJID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		if m.From != peerJID || m.T.IsZero() {
			t.Errorf("reported %+v", m)
		}
		got = append(got, m.ID)
	}
	if want := []string{"P6", "P5", "P4", "P3", "P2"}; len(got) != len(want) || got[0] != want[0] || got[4] != want[4] {
		t.Fatalf("reported %v, want %v", got, want)
	}

	// Two other users reported the contact already; ours is the third, which restricts
	// it on the gateway.
	gw := env.Sim.Gateway("whatsapp")
	for _, other := range []string{"491700000001@s.whatsapp.net", "491700000002@s.whatsapp.net"} {
		if err := gw.Report(ctx, jid.MustParse(other), peerJID, "X"); err != nil {
			t.Fatal(err)
		}
	}
	restricted := func() bool {
		var u struct{ Restricted *struct{ Reason string } }
		env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID, nil, &u)
		return u.Restricted != nil
	}
	if restricted() {
		t.Fatal("restricted before our report")
	}
	if n, err := client.ReportContact(ctx, portal); err != nil || n != reportedMessages {
		t.Fatalf("report: %d, %v", n, err)
	}
	waitFor(t, "the contact's restriction", restricted)

	// The commands, run by the login's owner in the portal, reply plainly; anyone
	// else is refused.
	alice, err := sb.br.GetUserByMXID(ctx, "@alice:test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := sb.br.GetUserByMXID(ctx, "@mallory:test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	for _, tc := range []struct {
		user *bridgev2.User
		run  func(*commands.Event)
		want string
	}{
		{alice, sb.c.cmdBlock, "Blocked this contact."},
		{alice, sb.c.cmdUnblock, "Unblocked this contact."},
		{alice, sb.c.cmdReport, "Reported 5 message(s) of this contact as spam."},
		{mallory, sb.c.cmdBlock, "Failed: this chat belongs to a login that is not yours"},
	} {
		bot := &replyRecorder{}
		tc.run(&commands.Event{Bot: bot, Bridge: sb.br, Portal: portal, User: tc.user, Ctx: ctx, Log: &log, OrigRoomID: "!portal:test.invalid"})
		if len(bot.replies) != 1 || strings.TrimSpace(bot.replies[0]) != tc.want {
			t.Errorf("%s: replies %q, want %q", tc.user.MXID, bot.replies, tc.want)
		}
	}

	// Not a 1:1 portal of this login: a plain error.
	other := &bridgev2.Portal{Portal: &database.Portal{PortalKey: ids.MakePortalKey(peerJID, "whatsapp:1-491700000009")}}
	if err := client.BlockContact(ctx, other); !errors.Is(err, errNotDirectChat) {
		t.Errorf("block in another login's portal: %v", err)
	}
}
