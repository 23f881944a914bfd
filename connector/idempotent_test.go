package connector

import (
	"testing"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
)

// A bridged message sent again after a crash gets the same transaction ID, so the
// homeserver answers with the first event; anything that differs gets its own.
func TestBridgedTxnID(t *testing.T) {
	text := func(body string) *event.Content {
		return &event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: body}}
	}
	msg := func(id, part string) *bridgev2.MatrixSendExtra {
		return &bridgev2.MatrixSendExtra{MessageMeta: &database.Message{ID: networkid.MessageID("m-" + id), PartID: networkid.PartID(part)}}
	}
	edit := &event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: "* hi",
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "hi"},
		RelatesTo:  &event.RelatesTo{Type: event.RelReplace, EventID: "$orig"}}}
	reaction := func(emoji string) *bridgev2.MatrixSendExtra {
		return &bridgev2.MatrixSendExtra{ReactionMeta: &database.Reaction{MessageID: "m-1", SenderID: "peer", EmojiID: networkid.EmojiID(emoji)}}
	}
	base := bridgedTxnID("!room", event.EventMessage, text("hello"), msg("1", ""))
	if base == "" || base != bridgedTxnID("!room", event.EventMessage, text("hello"), msg("1", "")) {
		t.Fatalf("the same message gave %q, then something else", base)
	}
	for _, tc := range []struct {
		name string
		got  string
	}{
		{"another message", bridgedTxnID("!room", event.EventMessage, text("hello"), msg("2", ""))},
		{"another part", bridgedTxnID("!room", event.EventMessage, text("hello"), msg("1", "1"))},
		{"another room", bridgedTxnID("!other", event.EventMessage, text("hello"), msg("1", ""))},
		{"an edit of it", bridgedTxnID("!room", event.EventMessage, edit, msg("1", ""))},
		{"a reaction", bridgedTxnID("!room", event.EventReaction, nil, reaction("👍"))},
		{"another reaction", bridgedTxnID("!room", event.EventReaction, nil, reaction("❤️"))},
	} {
		if tc.got == "" || tc.got == base {
			t.Errorf("%s: transaction ID %q collides with the message's %q", tc.name, tc.got, base)
		}
	}
	if id := bridgedTxnID("!room", event.EventMessage, text("notice"), &bridgev2.MatrixSendExtra{}); id != "" {
		t.Errorf("a send that bridges nothing got the derived ID %q", id)
	}
}

// A refusal that trying again cannot change is final; trouble that may pass is not.
func TestIsFinalRefusal(t *testing.T) {
	for _, tc := range []struct {
		status event.MessageStatus
		reason event.MessageStatusReason
		want   bool
	}{
		{event.MessageStatusFail, event.MessageStatusGenericError, true},
		{event.MessageStatusRetriable, event.MessageStatusUnsupported, true},
		{event.MessageStatusRetriable, event.MessageStatusTooOld, true},
		{event.MessageStatusRetriable, event.MessageStatusNoPermission, true},
		{event.MessageStatusRetriable, event.MessageStatusGenericError, false},
		{event.MessageStatusRetriable, event.MessageStatusNetworkError, false},
		{event.MessageStatusRetriable, event.MessageStatusBridgeUnavailable, false},
		{event.MessageStatusSuccess, "", false},
		{event.MessageStatusPending, "", false},
	} {
		if got := isFinalRefusal(&bridgev2.MessageStatus{Status: tc.status, ErrorReason: tc.reason}); got != tc.want {
			t.Errorf("%s %s: final = %v, want %v", tc.status, tc.reason, got, tc.want)
		}
	}
}
