package connector

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// inboxItem is the part of a simulated user's inbox item these tests read.
type inboxItem struct {
	ID   string
	Kind string
	Data struct {
		Text    string
		Removed bool
		Target  *struct {
			ID     string
			FromMe bool `json:"from_me"`
		}
		ReplyTo *struct{ ID string } `json:"reply_to"`
	}
}

// editsFixture is a connected WhatsApp login and an opted-in Meta peer.
type editsFixture struct {
	sb      *simBridge
	client  *InteropClient
	account jid.JID
	peer    jid.JID
	portal  *bridgev2.Portal
}

func newEditsFixture(t *testing.T) *editsFixture {
	t.Helper()
	sb := startSimBridge(t, sqltest.SQLite(t))
	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := ids.MakeUserLoginID(ids.WhatsApp, account)
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	client := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)
	var peer struct{ JID string }
	sb.env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &peer)
	peerJID, err := jid.Parse(peer.JID)
	if err != nil {
		t.Fatal(err)
	}
	portal := &bridgev2.Portal{Portal: &database.Portal{PortalKey: ids.MakePortalKey(peerJID, loginID)}}
	return &editsFixture{sb: sb, client: client, account: account, peer: peerJID, portal: portal}
}

// inbox waits for the peer's first item of kind that passes match.
func (f *editsFixture) inbox(t *testing.T, kind string, match func(inboxItem) bool) inboxItem {
	t.Helper()
	var got inboxItem
	waitFor(t, "a "+kind+" in the peer's inbox", func() bool {
		var inbox struct{ Items []inboxItem }
		f.sb.env.MustCall(t, 200, "GET", "/v1/users/"+f.peer.String()+"/inbox?since=0&kind="+kind, nil, &inbox)
		for _, it := range inbox.Items {
			if match(it) {
				got = it
				return true
			}
		}
		return false
	})
	return got
}

func (f *editsFixture) sendText(t *testing.T, body string, replyTo *database.Message) *database.Message {
	t.Helper()
	resp, err := f.client.HandleMatrixMessage(context.Background(), &bridgev2.MatrixMessage{
		MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
			Content: &event.MessageEventContent{MsgType: event.MsgText, Body: body}, Portal: f.portal,
		},
		ReplyTo: replyTo,
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.DB
}

// Matrix replies, edits, reactions and deletions reach the Meta user as WhatsApp's
// contextInfo, MESSAGE_EDIT, reaction and REVOKE about the right message.
func TestMatrixEditsReactionsRevokesAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	f := newEditsFixture(t)
	first := f.sendText(t, "first", nil)
	firstKey, _ := ids.ParseMessageID(first.ID)

	reply := f.sendText(t, "a reply", first)
	replyKey, _ := ids.ParseMessageID(reply.ID)
	it := f.inbox(t, "text", func(it inboxItem) bool { return it.ID == replyKey.StanzaID })
	if it.Data.ReplyTo == nil || it.Data.ReplyTo.ID != firstKey.StanzaID {
		t.Errorf("reply arrived as %+v", it.Data)
	}

	err := f.client.HandleMatrixEdit(ctx, &bridgev2.MatrixEdit{
		MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
			// As bridgev2 passes it: the fallback body, and the new content inside.
			Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "* first, fixed",
				NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "first, fixed"}}, Portal: f.portal,
		},
		EditTarget: first,
	})
	if err != nil {
		t.Fatal(err)
	}
	it = f.inbox(t, "edit", func(it inboxItem) bool { return it.Data.Target != nil && it.Data.Target.ID == firstKey.StanzaID })
	if it.Data.Text != "first, fixed" || !it.Data.Target.FromMe {
		t.Errorf("edit arrived as %+v", it.Data)
	}

	react := &bridgev2.MatrixReaction{
		MatrixEventBase: bridgev2.MatrixEventBase[*event.ReactionEventContent]{
			Content: &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, Key: "👍"}}, Portal: f.portal,
		},
		TargetMessage: first,
	}
	pre, err := f.client.PreHandleMatrixReaction(ctx, react)
	if err != nil || pre.MaxReactions != 1 || pre.EmojiID != "" || pre.SenderID != networkid.UserID(f.account.String()) {
		t.Fatalf("pre-handle %+v, %v", pre, err)
	}
	react.PreHandleResp = &pre
	dbReaction, err := f.client.HandleMatrixReaction(ctx, react)
	if err != nil || dbReaction.Emoji != "👍" {
		t.Fatalf("reaction %+v, %v", dbReaction, err)
	}
	it = f.inbox(t, "reaction", func(it inboxItem) bool { return !it.Data.Removed })
	if it.Data.Text != "👍" || it.Data.Target == nil || it.Data.Target.ID != firstKey.StanzaID {
		t.Errorf("reaction arrived as %+v", it.Data)
	}
	// A reaction to the peer's own message names it as theirs (fromMe false).
	peerMsg := &database.Message{ID: ids.MakeMessageID(f.peer, f.peer, "PEERMSG1")}
	react.TargetMessage, react.Content.RelatesTo.Key, react.PreHandleResp = peerMsg, "😂", nil
	if _, err := f.client.HandleMatrixReaction(ctx, react); err != nil {
		t.Fatal(err)
	}
	it = f.inbox(t, "reaction", func(it inboxItem) bool { return it.Data.Target != nil && it.Data.Target.ID == "PEERMSG1" })
	if it.Data.Text != "😂" || it.Data.Target.FromMe {
		t.Errorf("reaction to the peer's message arrived as %+v", it.Data)
	}
	err = f.client.HandleMatrixReactionRemove(ctx, &bridgev2.MatrixReactionRemove{
		MatrixEventBase: bridgev2.MatrixEventBase[*event.RedactionEventContent]{Content: &event.RedactionEventContent{}, Portal: f.portal},
		TargetReaction:  &database.Reaction{MessageID: first.ID, Emoji: "👍"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.inbox(t, "reaction", func(it inboxItem) bool {
		return it.Data.Removed && it.Data.Target != nil && it.Data.Target.ID == firstKey.StanzaID
	})

	err = f.client.HandleMatrixMessageRemove(ctx, &bridgev2.MatrixMessageRemove{
		MatrixEventBase: bridgev2.MatrixEventBase[*event.RedactionEventContent]{Content: &event.RedactionEventContent{}, Portal: f.portal},
		TargetMessage:   reply,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.inbox(t, "revoke", func(it inboxItem) bool { return it.Data.Target != nil && it.Data.Target.ID == replyKey.StanzaID })
}

// Edits after 15 minutes and deletions after 48 hours, and either of them on the
// peer's messages, are refused with a notice before anything is sent.
func TestMatrixEditRefusals(t *testing.T) {
	account := jid.Interop(simtest.IntegratorID, "491701234567")
	peer := jid.New("491709876543", jid.ServerGateway)
	ic := &InteropClient{Main: &InteropConnector{}, Account: account}
	portal := &bridgev2.Portal{Portal: &database.Portal{PortalKey: ids.MakePortalKey(peer, "whatsapp:x")}}
	own := func(age time.Duration) *database.Message {
		return &database.Message{ID: ids.MakeMessageID(peer, account, "ABC"), Timestamp: time.Now().Add(-age)}
	}
	theirs := &database.Message{ID: ids.MakeMessageID(peer, peer, "DEF"), Timestamp: time.Now()}
	edit := func(target *database.Message) error {
		return ic.HandleMatrixEdit(context.Background(), &bridgev2.MatrixEdit{
			MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "x"}, Portal: portal},
			EditTarget:      target,
		})
	}
	remove := func(target *database.Message) error {
		return ic.HandleMatrixMessageRemove(context.Background(), &bridgev2.MatrixMessageRemove{
			MatrixEventBase: bridgev2.MatrixEventBase[*event.RedactionEventContent]{Content: &event.RedactionEventContent{}, Portal: portal},
			TargetMessage:   target,
		})
	}
	for _, tc := range []struct {
		name    string
		err     error
		wantErr error
		notice  string
	}{
		{"edit after 16 minutes", edit(own(16 * time.Minute)), errTooOld, "within 15 minutes"},
		{"edit of the peer's message", edit(theirs), errNotOwn, "your own messages"},
		{"deletion after 49 hours", remove(own(49 * time.Hour)), errTooOld, "within 48 hours"},
		{"deletion of the peer's message", remove(theirs), errNotOwn, "your own messages"},
		// In the window, the refusal is only that this client is not connected.
		{"edit after 14 minutes", edit(own(14 * time.Minute)), ErrNotConnected, "not connected"},
		{"deletion after 47 hours", remove(own(47 * time.Hour)), ErrNotConnected, "not connected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ms bridgev2.MessageStatus
			if !errors.Is(tc.err, tc.wantErr) || !errors.As(tc.err, &ms) || !ms.SendNotice || !strings.Contains(ms.Message, tc.notice) {
				t.Errorf("got %v (%q), want %v", tc.err, ms.Message, tc.wantErr)
			}
		})
	}
}

// nextChange is the next queued message, reaction or removal, skipping receipts and
// typing notifications, which the peer's devices send on their own.
func nextChange(t *testing.T, q *queued) bridgev2.RemoteEvent {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case evt := <-q.events:
			switch evt.(type) {
			case *simplevent.Message[*waE2E.Message], *simplevent.Reaction, *simplevent.MessageRemove:
				return evt
			}
		case <-deadline:
			t.Fatal("no remote event queued")
			return nil
		}
	}
}

// A Meta user's replies, reactions, edits and revokes become the remote events that
// change the bridged messages they are about.
func TestMetaEditsReactionsRevokesAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	f := newEditsFixture(t)
	ours := f.sendText(t, "from matrix", nil)
	oursKey, _ := ids.ParseMessageID(ours.ID)
	send := func(body map[string]any) string {
		t.Helper()
		body["to"] = f.account.String()
		var sent struct{ ID string }
		f.sb.env.MustCall(t, 200, "POST", "/v1/users/"+f.peer.String()+"/messages", body, &sent)
		return sent.ID
	}
	theirs := send(map[string]any{"kind": "text", "text": "a reply", "reply_to": map[string]any{"id": oursKey.StanzaID, "sender": f.account.String(), "text": "from matrix"}})
	theirsID := ids.MakeMessageID(f.peer, f.peer, theirs)
	msg, ok := nextChange(t, f.sb.q).(*simplevent.Message[*waE2E.Message])
	if !ok || msg.ID != theirsID {
		t.Fatalf("reply queued as %+v", msg)
	}
	conv, err := msg.ConvertMessage(ctx, nil, nil)
	if err != nil || conv.ReplyTo == nil || conv.ReplyTo.MessageID != ours.ID {
		t.Fatalf("reply converted to %+v, %v", conv, err)
	}

	for _, tc := range []struct {
		name   string
		body   map[string]any
		typ    bridgev2.RemoteEventType
		target networkid.MessageID
		emoji  string
	}{
		{"reaction to our message", map[string]any{"kind": "reaction", "text": "❤️", "target": map[string]any{"id": oursKey.StanzaID, "sender": f.account.String()}},
			bridgev2.RemoteEventReaction, ours.ID, "❤️"},
		{"reaction to their own message", map[string]any{"kind": "reaction", "text": "👍", "target": map[string]any{"id": theirs}},
			bridgev2.RemoteEventReaction, theirsID, "👍\ufe0f"}, // Matrix clients expect the variation selector
		{"reaction taken back", map[string]any{"kind": "reaction", "text": "", "target": map[string]any{"id": oursKey.StanzaID, "sender": f.account.String()}},
			bridgev2.RemoteEventReactionRemove, ours.ID, ""},
		{"edit", map[string]any{"kind": "edit", "text": "a *fixed* reply", "target": map[string]any{"id": theirs}},
			bridgev2.RemoteEventEdit, theirsID, ""},
		{"revoke", map[string]any{"kind": "revoke", "target": map[string]any{"id": theirs}},
			bridgev2.RemoteEventMessageRemove, theirsID, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send(tc.body)
			evt := nextChange(t, f.sb.q)
			if evt.GetType() != tc.typ || evt.GetPortalKey() != f.portal.PortalKey || evt.GetSender().Sender != networkid.UserID(f.peer.String()) {
				t.Fatalf("queued %T %s in %v from %v", evt, evt.GetType(), evt.GetPortalKey(), evt.GetSender())
			}
			switch evt := evt.(type) {
			case *simplevent.Reaction:
				if evt.TargetMessage != tc.target || evt.Emoji != tc.emoji || evt.EmojiID != "" {
					t.Errorf("reaction %+v", evt)
				}
			case *simplevent.MessageRemove:
				if evt.TargetMessage != tc.target {
					t.Errorf("revoke of %s", evt.TargetMessage)
				}
			case *simplevent.Message[*waE2E.Message]:
				if evt.TargetMessage != tc.target {
					t.Fatalf("edit of %s", evt.TargetMessage)
				}
				// After WhatsApp's 15-minute window the edit is dropped, as WhatsApp does.
				late := []*database.Message{{ID: theirsID, Timestamp: evt.Timestamp.Add(-17 * time.Minute)}}
				if _, err := evt.ConvertEdit(ctx, nil, nil, late); !errors.Is(err, bridgev2.ErrIgnoringRemoteEvent) {
					t.Errorf("late edit: %v", err)
				}
				edit, err := evt.ConvertEdit(ctx, nil, nil, []*database.Message{{ID: theirsID, Timestamp: evt.Timestamp.Add(-14 * time.Minute)}})
				if err != nil || len(edit.ModifiedParts) != 1 || edit.ModifiedParts[0].Content.Body != "a *fixed* reply" ||
					!strings.Contains(edit.ModifiedParts[0].Content.FormattedBody, "<strong>fixed</strong>") {
					t.Errorf("edit converted to %+v, %v", edit, err)
				}
			}
		})
	}
}

// Portals declare replies, edits, deletions and one reaction per user, since bridgev2
// drops Matrix edits and replies in rooms that do not; edits carry no max age so the
// handler's own notice explains the 15-minute window.
func TestCapabilitiesDeclareEdits(t *testing.T) {
	f := (&InteropClient{}).GetCapabilities(context.Background(), nil)
	if !f.Reply.Partial() || !f.Edit.Partial() || !f.Delete.Partial() || !f.Reaction.Partial() || f.ReactionCount != 1 {
		t.Errorf("features %+v", f)
	}
	if f.EditMaxAge != nil || f.DeleteMaxAge == nil || f.DeleteMaxAge.Duration != 48*time.Hour {
		t.Errorf("max ages: edit %v, delete %v", f.EditMaxAge, f.DeleteMaxAge)
	}
}

// fakeEvents is a MatrixAPI that only answers GetEvent.
type fakeEvents struct {
	bridgev2.MatrixAPI
	events map[id.EventID]*event.Event
}

func (f fakeEvents) GetEvent(_ context.Context, _ id.RoomID, evtID id.EventID) (*event.Event, error) {
	if evt, ok := f.events[evtID]; ok {
		return evt, nil
	}
	return nil, errors.New("M_NOT_FOUND")
}

// A reply quotes the replied-to event's text, without its own reply fallback and
// as last edited; anything unreadable leaves the quote empty instead of failing.
func TestQuotedText(t *testing.T) {
	bot := fakeEvents{events: map[id.EventID]*event.Event{
		"$text": {Type: event.EventMessage, Content: event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: "hello"}}},
		"$raw":  {Type: event.EventMessage, Content: event.Content{VeryRaw: []byte(`{"msgtype":"m.text","body":"from raw"}`)}},
		"$reply": {Type: event.EventMessage, Content: event.Content{Parsed: &event.MessageEventContent{
			MsgType: event.MsgText, Body: "> <@a:x> older\n\nthe answer", Format: event.FormatHTML,
			FormattedBody: "<mx-reply><blockquote>older</blockquote></mx-reply>the answer",
			RelatesTo:     &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: "$older"}},
		}}},
		"$edited": {Type: event.EventMessage, Content: event.Content{Parsed: &event.MessageEventContent{
			MsgType: event.MsgText, Body: "* new", NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "new"},
		}}},
		"$state": {Type: event.StateTopic, Content: event.Content{Parsed: &event.TopicEventContent{Topic: "topic"}}},
	}}
	for _, tc := range []struct {
		name string
		bot  bridgev2.MatrixAPI
		evt  id.EventID
		want string
	}{
		{"text", bot, "$text", "hello"},
		{"unparsed content", bot, "$raw", "from raw"},
		{"a reply itself", bot, "$reply", "the answer"},
		{"an edit event", bot, "$edited", "new"},
		{"not a message", bot, "$state", ""},
		{"missing event", bot, "$gone", ""},
		{"no bot", nil, "$text", ""},
		{"no event id", bot, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := quotedText(context.Background(), tc.bot, "!room:x", tc.evt); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
