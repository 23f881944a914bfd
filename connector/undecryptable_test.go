package connector

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// The bridge loses its session with a Meta user (as after a restore from an old
// backup): the user's next message does not decrypt. The portal gets a notice from
// the user's ghost under the message's own ID, the bridge's retry receipts make the
// user's app send the message again with a new session, and the message arrives as
// an upsert that edits the notice into the text.
func TestUndecryptableNoticeAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	env, q := sb.env, sb.q
	const number = "491701234569"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := networkid.UserLoginID(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	waitFor(t, "keys on the gateway", func() bool {
		var acc struct {
			HasKeys bool `json:"has_keys"`
		}
		return env.Call(t, "GET", "/v1/accounts/"+account.String()+"?network=whatsapp", nil, &acc) == 200 && acc.HasKeys
	})
	var p struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876502", "opt_in": []int{simtest.IntegratorID}}, &p)
	peer, err := jid.Parse(p.JID)
	if err != nil {
		t.Fatal(err)
	}
	send := func(text string) string {
		var sent struct{ ID string }
		env.MustCall(t, 200, "POST", "/v1/users/"+peer.String()+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": text}, &sent)
		return sent.ID
	}

	// A first exchange both ways, so the user's app holds a confirmed session.
	send("first")
	first := q.next(t)
	client := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)
	portal := &bridgev2.Portal{Portal: &database.Portal{PortalKey: first.PortalKey}}
	if _, err := client.HandleMatrixMessage(ctx, &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "reply"}, Portal: portal,
	}}); err != nil {
		t.Fatal(err)
	}
	var inbox struct{ Items []struct{ ID string } }
	env.MustCall(t, 200, "GET", "/v1/users/"+peer.String()+"/inbox?since=0&wait=10s&kind=text", nil, &inbox)
	if len(inbox.Items) == 0 {
		t.Fatal("the reply did not reach the Meta user")
	}

	stored, err := sb.c.Store.GetAccount(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.c.Store.StoreFor(stored).DeleteSessionsOf(ctx, peer.SignalName()); err != nil {
		t.Fatal(err)
	}
	stanzaID := send("the *secret* plan")
	msgID := ids.MakeMessageID(peer, peer, stanzaID)

	var notice *simplevent.PreConvertedMessage
	var arrived *simplevent.Message[*waE2E.Message]
	deadline := time.After(30 * time.Second)
	// The retry receipt can overtake the gateway's ack of the message it asks for;
	// the user's app then cannot answer it until it reconnects, when the gateway
	// delivers the unacked receipt again (interop.Account.HandleRetryReceipt).
	reconnect := time.After(8 * time.Second)
	for arrived == nil {
		select {
		case <-reconnect:
			t.Log("no answer to the retry receipt yet; reconnecting the Meta user's app")
			env.MustCall(t, 200, "POST", "/v1/faults", map[string]any{"endpoint": peer.String(), "kind": "drop"}, nil)
		case evt := <-q.events:
			switch e := evt.(type) {
			case *simplevent.PreConvertedMessage:
				if notice == nil {
					notice = e
				}
			case *simplevent.Message[*waE2E.Message]:
				arrived = e
			}
		case <-deadline:
			t.Fatalf("no message after the failed decryption (notice %v)", notice != nil)
		}
	}
	if notice == nil {
		t.Fatal("the message that did not decrypt left no notice")
	}
	if notice.ID != msgID || notice.GetType() != bridgev2.RemoteEventMessage || notice.PortalKey != first.PortalKey ||
		!notice.CreatePortal || notice.Sender.Sender != ids.MakeUserID(peer) || notice.Sender.IsFromMe {
		t.Errorf("notice %s %+v", notice.ID, notice.EventMeta)
	}
	conv, err := notice.ConvertMessage(ctx, portal, nil)
	if err != nil || len(conv.Parts) != 1 {
		t.Fatalf("notice converted %+v, %v", conv, err)
	}
	if c := conv.Parts[0].Content; conv.Parts[0].Type != event.EventMessage || c.MsgType != event.MsgNotice || c.Body != undecryptableNotice {
		t.Errorf("notice %s %q", c.MsgType, c.Body)
	}

	// The message itself, sent again, replaces the notice.
	if arrived.ID != msgID || arrived.GetType() != bridgev2.RemoteEventMessageUpsert {
		t.Fatalf("message %s %s", arrived.ID, arrived.GetType())
	}
	stored0 := &database.Message{ID: msgID, MXID: id.EventID("$notice"), Room: first.PortalKey,
		SenderID: ids.MakeUserID(peer), Metadata: conv.Parts[0].DBMetadata}
	res, err := arrived.HandleExisting(ctx, portal, nil, []*database.Message{stored0})
	if err != nil || len(res.SubEvents) != 1 {
		t.Fatalf("upsert over the notice: %+v, %v", res, err)
	}
	edit, ok := res.SubEvents[0].(bridgev2.RemoteEdit)
	if !ok || edit.GetType() != bridgev2.RemoteEventEdit || edit.GetTargetMessage() != msgID || edit.GetSender() != notice.Sender {
		t.Fatalf("sub-event %T %+v", res.SubEvents[0], res.SubEvents[0])
	}
	converted, err := edit.ConvertEdit(ctx, portal, nil, []*database.Message{stored0})
	if err != nil || len(converted.ModifiedParts) != 1 {
		t.Fatalf("edit %+v, %v", converted, err)
	}
	part := converted.ModifiedParts[0]
	if part.Content.MsgType != event.MsgText || part.Content.Body != "the *secret* plan" || part.Part != stored0 {
		t.Errorf("edit part %s %q", part.Content.MsgType, part.Content.Body)
	}
	if isUndecryptableNotice([]*database.Message{part.Part}) {
		t.Error("the replaced notice is still marked undecryptable")
	}

	// A redelivery of a message bridged normally changes nothing.
	res, err = arrived.HandleExisting(ctx, portal, nil, []*database.Message{part.Part})
	if err != nil || len(res.SubEvents) != 0 {
		t.Errorf("upsert over a bridged message: %+v, %v", res, err)
	}
}

// A reaction that did not decrypt at first left a notice under its own ID; once it
// decrypts it reacts to its target and the notice is taken back without a
// placeholder. A reaction that decrypted the first time removes nothing.
func TestDecryptedReactionRemovesItsNotice(t *testing.T) {
	ctx := context.Background()
	c := newTestConnector(t, nil)
	q := &queued{events: make(chan bridgev2.RemoteEvent, 16)}
	c.queueRemoteEvent = q.queue
	br, _ := newTestBridge(t, sqltest.SQLite(t), c)
	account := jid.Interop(12, "491701234570")
	loginID := ids.MakeUserLoginID(ids.WhatsApp, account)
	ic := newInteropClient(c, &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: loginID}}, ids.WhatsApp, account)
	peer := jid.JID{User: "491709876503", Server: jid.ServerGateway}
	key := ids.MakePortalKey(peer, loginID)
	if _, err := br.GetPortalByKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := br.DB.Ghost.Insert(ctx, &database.Ghost{ID: ids.MakeUserID(peer)}); err != nil {
		t.Fatal(err)
	}
	noticeID := ids.MakeMessageID(peer, peer, "REACTION1")
	if err := br.DB.Message.Insert(ctx, &database.Message{ID: noticeID, MXID: "$notice", Room: key, SenderID: ids.MakeUserID(peer),
		Timestamp: time.Now(), Metadata: &MessageMetadata{Undecryptable: true}}); err != nil {
		t.Fatal(err)
	}
	react := func(stanzaID string) []bridgev2.RemoteEvent {
		msg := &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
			Key:  &waE2E.MessageKey{RemoteJid: proto.String(account.String()), FromMe: proto.Bool(false), Id: proto.String("TARGET")},
			Text: proto.String("👍"),
		}}
		res := ic.bridgeMessage(ctx, &interop.DecryptedMessage{
			Info:    interop.MessageInfo{ID: stanzaID, Chat: peer, Sender: peer, Timestamp: time.Now(), Type: "reaction"},
			Message: msg,
		})
		if !res.Success {
			t.Fatalf("reaction %s: %v", stanzaID, res.Error)
		}
		var got []bridgev2.RemoteEvent
		for len(q.events) > 0 {
			got = append(got, <-q.events)
		}
		return got
	}
	got := react("REACTION1")
	if len(got) != 2 {
		t.Fatalf("queued %d events: %+v", len(got), got)
	}
	if _, ok := got[0].(*simplevent.Reaction); !ok {
		t.Errorf("first queued %T", got[0])
	}
	rm, ok := got[1].(*simplevent.MessageRemove)
	if !ok || rm.TargetMessage != noticeID || !rm.HidePlaceholder || rm.PortalKey != key || rm.Sender.Sender != ids.MakeUserID(peer) {
		t.Errorf("second queued %T %+v", got[1], got[1])
	}
	if got := react("REACTION2"); len(got) != 1 {
		t.Errorf("a reaction without a notice queued %d events", len(got))
	}
}
