package connector

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// offlineClient is a client for turning stanzas into remote events, without a connection.
func offlineClient(account jid.JID) *InteropClient {
	return &InteropClient{
		UserLogin: &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: ids.MakeUserLoginID(ids.WhatsApp, account)}},
		Network:   ids.WhatsApp, Account: account,
	}
}

func TestReceiptEvent(t *testing.T) {
	account := jid.Interop(simtest.IntegratorID, "491701234567")
	peer, _ := jid.Parse("491709876543@s.whatsapp.net")
	ic := offlineClient(account)
	portal := ids.MakePortalKey(peer, ic.UserLogin.ID)
	mid := func(id string) networkid.MessageID { return ids.MakeMessageID(peer, account, id) }
	list := func(ids ...string) []stanza.Node {
		items := make([]stanza.Node, 0, len(ids))
		for _, id := range ids {
			items = append(items, stanza.Node{Tag: "item", Attrs: stanza.Attrs{"id": id}})
		}
		return []stanza.Node{{Tag: "list", Content: items}}
	}
	tests := []struct {
		name     string
		node     stanza.Node
		wantType bridgev2.RemoteEventType
		targets  []networkid.MessageID
		last     networkid.MessageID
		readUpTo time.Time
		none     bool
		err      bool
	}{
		{name: "delivered", node: stanza.Node{Tag: "receipt", Attrs: stanza.Attrs{"from": "491709876543:2@s.whatsapp.net", "id": "A"}},
			wantType: bridgev2.RemoteEventDeliveryReceipt, targets: []networkid.MessageID{mid("A")}},
		{name: "read with list", node: stanza.Node{Tag: "receipt", Attrs: stanza.Attrs{"from": peer.String(), "id": "C", "type": "read", "t": "1700000000"}, Content: list("A", "B")},
			wantType: bridgev2.RemoteEventReadReceipt, targets: []networkid.MessageID{mid("C"), mid("A"), mid("B")}, last: mid("C"), readUpTo: time.Unix(1700000000, 0)},
		{name: "played is read", node: stanza.Node{Tag: "receipt", Attrs: stanza.Attrs{"from": peer.String(), "id": "V", "type": "played", "t": "1700000001"}},
			wantType: bridgev2.RemoteEventReadReceipt, targets: []networkid.MessageID{mid("V")}, last: mid("V"), readUpTo: time.Unix(1700000001, 0)},
		{name: "retry", node: stanza.Node{Tag: "receipt", Attrs: stanza.Attrs{"from": peer.String(), "id": "R", "type": "retry"}}, none: true},
		{name: "no id", node: stanza.Node{Tag: "receipt", Attrs: stanza.Attrs{"from": peer.String()}}, err: true},
		{name: "bad from", node: stanza.Node{Tag: "receipt", Attrs: stanza.Attrs{"from": "@@", "id": "A"}}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evt, err := ic.receiptEvent(tt.node)
			if (err != nil) != tt.err {
				t.Fatalf("error %v, want error %v", err, tt.err)
			}
			if tt.err || tt.none {
				if evt != nil {
					t.Fatalf("bridged %+v", evt)
				}
				return
			}
			if evt.Type != tt.wantType || evt.PortalKey != portal || evt.Sender.Sender != ids.MakeUserID(peer) || evt.Sender.IsFromMe {
				t.Errorf("meta %+v", evt.EventMeta)
			}
			if len(evt.Targets) != len(tt.targets) {
				t.Fatalf("targets %v, want %v", evt.Targets, tt.targets)
			}
			for i := range tt.targets {
				if evt.Targets[i] != tt.targets[i] {
					t.Errorf("target %d: %s, want %s", i, evt.Targets[i], tt.targets[i])
				}
			}
			if evt.LastTarget != tt.last || !evt.ReadUpTo.Equal(tt.readUpTo) {
				t.Errorf("last %s up to %v", evt.LastTarget, evt.ReadUpTo)
			}
		})
	}
}

func TestTypingEvent(t *testing.T) {
	peer, _ := jid.Parse("491709876543@s.whatsapp.net")
	ic := offlineClient(jid.Interop(simtest.IntegratorID, "491701234567"))
	cs := func(from string, child stanza.Node) stanza.Node {
		return stanza.Node{Tag: "chatstate", Attrs: stanza.Attrs{"from": from}, Content: []stanza.Node{child}}
	}
	tests := []struct {
		name    string
		node    stanza.Node
		timeout time.Duration
		typ     bridgev2.TypingType
		none    bool
		err     bool
	}{
		{name: "composing", node: cs(peer.String(), stanza.Node{Tag: "composing"}), timeout: typingTimeout, typ: bridgev2.TypingTypeText},
		{name: "recording", node: cs(peer.String(), stanza.Node{Tag: "composing", Attrs: stanza.Attrs{"media": "audio"}}), timeout: typingTimeout, typ: bridgev2.TypingTypeRecordingMedia},
		{name: "paused", node: cs(peer.String(), stanza.Node{Tag: "paused"}), timeout: 0},
		{name: "unknown state", node: cs(peer.String(), stanza.Node{Tag: "dancing"}), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evt, err := ic.typingEvent(tt.node)
			if (err != nil) != tt.err {
				t.Fatalf("error %v, want error %v", err, tt.err)
			}
			if tt.err || tt.none {
				if evt != nil {
					t.Fatalf("bridged %+v", evt)
				}
				return
			}
			if evt.EventMeta.Type != bridgev2.RemoteEventTyping || evt.PortalKey != ids.MakePortalKey(peer, ic.UserLogin.ID) ||
				evt.Sender.Sender != ids.MakeUserID(peer) || evt.Timeout != tt.timeout || evt.GetTypingType() != tt.typ {
				t.Errorf("typing %+v", evt)
			}
		})
	}
}

// nextEvent waits for the next queued remote event of type T, skipping others (a
// delivery receipt may come before or after other events).
func nextEvent[T bridgev2.RemoteEvent](t *testing.T, q *queued, match func(T) bool) T {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case evt := <-q.events:
			if e, ok := evt.(T); ok && match(e) {
				return e
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T queued", zero)
			return zero
		}
	}
}

type inboxItems struct {
	Items []struct {
		ID     string
		Kind   string
		Sender string
		Data   struct {
			Receipt   string
			ChatState string `json:"chat_state"`
		}
	}
}

// Receipts and typing both ways between a login and a simulated WhatsApp user: the
// user's delivery and read receipts and typing become remote events, and the Matrix
// user's read receipts (only when enabled) and typing reach the user's inbox.
func TestReceiptsAndTypingAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	sb.c.Config.EnableReadReceipts = true
	env, q := sb.env, sb.q
	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := networkid.UserLoginID(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	client := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)

	var peer struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &peer)
	peerJID, _ := jid.Parse(peer.JID)
	portalKey := ids.MakePortalKey(peerJID, loginID)
	var sent struct{ ID string }
	env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": "hello"}, &sent)
	theirs := q.next(t)

	// Our message is delivered to the user's device, then read.
	portal := &bridgev2.Portal{Portal: &database.Portal{PortalKey: portalKey}}
	resp, err := client.HandleMatrixMessage(ctx, &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "hi back"}, Portal: portal,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ours := resp.DB.ID
	key, _ := ids.ParseMessageID(ours)
	isFor := func(typ bridgev2.RemoteEventType) func(*simplevent.Receipt) bool {
		return func(r *simplevent.Receipt) bool {
			return r.Type == typ && len(r.Targets) > 0 && r.Targets[0] == ours
		}
	}
	delivered := nextEvent(t, q, isFor(bridgev2.RemoteEventDeliveryReceipt))
	if delivered.PortalKey != portalKey || delivered.Sender.Sender != networkid.UserID(peer.JID) {
		t.Errorf("delivery receipt %+v", delivered.EventMeta)
	}
	env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/receipts", map[string]any{"chat": account.String(), "ids": []string{key.StanzaID}, "type": "read"}, nil)
	read := nextEvent(t, q, isFor(bridgev2.RemoteEventReadReceipt))
	if read.LastTarget != ours || read.PortalKey != portalKey || read.Sender.Sender != networkid.UserID(peer.JID) || read.ReadUpTo.IsZero() {
		t.Errorf("read receipt %+v", read)
	}

	// The user types, then stops.
	for _, st := range []struct {
		state   string
		timeout time.Duration
	}{{"composing", typingTimeout}, {"paused", 0}} {
		env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/typing", map[string]any{"to": account.String(), "state": st.state}, nil)
		typing := nextEvent(t, q, func(*simplevent.Typing) bool { return true })
		if typing.PortalKey != portalKey || typing.Sender.Sender != networkid.UserID(peer.JID) || typing.Timeout != st.timeout {
			t.Errorf("%s: typing %+v", st.state, typing)
		}
	}

	// The Matrix user types and reads the user's message.
	if err := client.HandleMatrixTyping(ctx, &bridgev2.MatrixTyping{Portal: portal, IsTyping: true}); err != nil {
		t.Fatal(err)
	}
	var inbox inboxItems
	inbox = inboxItems{} // decoding into old items would mix them
	env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID+"/inbox?since=0&wait=10s&kind=chatstate", nil, &inbox)
	if len(inbox.Items) == 0 || inbox.Items[0].Data.ChatState != "composing" || inbox.Items[0].Sender != account.String() {
		t.Fatalf("chatstates %+v", inbox)
	}
	readMsg := &database.Message{ID: theirs.ID, SenderID: theirs.Sender.Sender, Timestamp: time.Now()}
	rr := &bridgev2.MatrixReadReceipt{Portal: portal, ExactMessage: readMsg, ReadUpTo: readMsg.Timestamp}
	if err := client.HandleMatrixReadReceipt(ctx, rr); err != nil {
		t.Fatal(err)
	}
	// The message's delivery receipt (sent when it arrived) comes before the read one.
	deadline := time.Now().Add(10 * time.Second)
	for gotRead := false; !gotRead; {
		inbox = inboxItems{} // decoding into old items would mix them
		env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID+"/inbox?since=0&wait=2s&kind=receipt&id="+sent.ID, nil, &inbox)
		for _, it := range inbox.Items {
			gotRead = gotRead || it.Data.Receipt == "read"
		}
		if !gotRead && time.Now().After(deadline) {
			t.Fatalf("no read receipt for the user's message: %+v", inbox)
		}
	}

	// With read receipts off, nothing is sent: the paused chatstate sent after the
	// receipt arrives, and no read receipt came before it.
	env.MustCall(t, 200, "DELETE", "/v1/users/"+peer.JID+"/inbox", nil, nil)
	sb.c.Config.EnableReadReceipts = false
	if err := client.HandleMatrixReadReceipt(ctx, rr); err != nil {
		t.Fatal(err)
	}
	if err := client.HandleMatrixTyping(ctx, &bridgev2.MatrixTyping{Portal: portal, IsTyping: false}); err != nil {
		t.Fatal(err)
	}
	inbox = inboxItems{} // decoding into old items would mix them
	env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID+"/inbox?since=0&wait=10s&kind=chatstate", nil, &inbox)
	if len(inbox.Items) == 0 || inbox.Items[0].Data.ChatState != "paused" {
		t.Fatalf("chatstates %+v", inbox)
	}
	inbox = inboxItems{} // decoding into old items would mix them
	env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID+"/inbox?since=0&kind=receipt&id="+sent.ID, nil, &inbox)
	for _, it := range inbox.Items {
		if it.Data.Receipt == "read" {
			t.Errorf("read receipt sent while disabled: %+v", it)
		}
	}
}

func TestUnreadStanzaIDs(t *testing.T) {
	account := jid.Interop(simtest.IntegratorID, "491701234567")
	peer, _ := jid.Parse("491709876543@s.whatsapp.net")
	t0 := time.Unix(1700000000, 0)
	msg := func(sender jid.JID, id string, sec int) *database.Message {
		return &database.Message{ID: ids.MakeMessageID(peer, sender, id), Timestamp: t0.Add(time.Duration(sec) * time.Second)}
	}
	many := make([]*database.Message, 0, maxReadIDs+5)
	for i := range maxReadIDs + 5 {
		many = append(many, msg(peer, "M"+strconv.Itoa(i), i))
	}
	tests := []struct {
		name string
		msgs []*database.Message
		want []string
	}{
		{name: "none", msgs: nil, want: nil},
		{name: "ours are skipped", msgs: []*database.Message{msg(account, "O", 1), msg(peer, "P", 2)}, want: []string{"P"}},
		{name: "newest first, read one first", msgs: []*database.Message{msg(peer, "B", 2), msg(peer, "A", 1), msg(peer, "C", 3)}, want: []string{"C", "B", "A"}},
		{name: "device copies once", msgs: []*database.Message{msg(peer.WithDevice(2), "A", 1), msg(peer, "A", 1)}, want: []string{"A"}},
		{name: "unparseable skipped", msgs: []*database.Message{{ID: "junk"}, msg(peer, "A", 1)}, want: []string{"A"}},
		{name: "bounded", msgs: many, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unreadStanzaIDs(peer.String(), tt.msgs)
			if tt.name == "bounded" {
				if len(got) != maxReadIDs || got[0] != "M"+strconv.Itoa(maxReadIDs+4) {
					t.Errorf("got %d ids starting %v", len(got), got[:1])
				}
				return
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
