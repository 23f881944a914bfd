//go:build synapse

package e2e

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

// waitTimeout bounds every wait for something to cross the bridge.
const waitTimeout = 30 * time.Second

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor waits for an event that match accepts, received by u after mark.
func waitFor(t *testing.T, u *kit.User, mark int, what string, match func(*event.Event) bool) *event.Event {
	t.Helper()
	evt, err := u.WaitEventAfter(context.Background(), mark, waitTimeout, what, match)
	if err != nil {
		t.Fatal(err)
	}
	return evt
}

// inbox waits for an item of kind in the peer's inbox that match accepts.
func (c *chat) inbox(t *testing.T, what, kind string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	item, err := c.peer.WaitInbox(c.ctx, waitTimeout, what, url.Values{"kind": {kind}, "chat": {c.account}}, match)
	if err != nil {
		t.Fatal(err)
	}
	return item
}

// inboxID matches inbox items about the message with stanza id.
func inboxID(stanza string) func(map[string]any) bool {
	return func(item map[string]any) bool { return item["id"] == stanza }
}

// aliceSends sends content from the Matrix user and waits until the Meta user's device
// received it as text; it returns the event ID and the inbox item.
func (c *chat) aliceSends(t *testing.T, content *event.MessageEventContent, wantText string) (id.EventID, map[string]any) {
	t.Helper()
	evtID, err := c.alice.Send(c.ctx, c.room, content)
	must(t, err)
	item := c.inbox(t, fmt.Sprintf("the Matrix user's text %q", wantText), "text", inboxText(wantText))
	return evtID, item
}

// peerSends sends from the Meta user and waits for the ghost's message with body;
// it returns the stanza id and the Matrix event.
func (c *chat) peerSends(t *testing.T, body map[string]any, wantBody string) (string, *event.Event) {
	t.Helper()
	mark := c.alice.Mark()
	if body["to"] == nil {
		body["to"] = c.account
	}
	if body["kind"] == nil {
		body["kind"] = "text"
	}
	sent, err := c.peer.Send(c.ctx, body)
	must(t, err)
	return sent.ID, waitMessage(t, c.alice, mark, c.room, c.ghost, wantBody)
}

// command sends a bridge command in the portal and returns the bot's reply.
func (c *chat) command(t *testing.T, cmd string) string {
	t.Helper()
	mark := c.alice.Mark()
	_, err := c.alice.SendText(c.ctx, c.room, "!meta "+cmd)
	must(t, err)
	bot := id.NewUserID("metainteropbot", kit.ServerName)
	evt := waitFor(t, c.alice, mark, "the bot's answer to "+cmd, kit.IsMessage(c.room, bot, ""))
	return evt.Content.AsMessage().Body
}

// replyTo reads the event a Matrix message replies to.
func replyTo(evt *event.Event) id.EventID {
	rel := evt.Content.AsMessage().RelatesTo
	if rel == nil {
		return ""
	}
	return rel.GetReplyTo()
}

// A Matrix user chats with a simulated WhatsApp user through the real Synapse, the
// bridge process and metasim, and every feature of a 1:1 chat works both ways, as the
// Matrix client and the Meta user's devices see it: formatting, mentions, replies,
// edits, deletions, reactions, delivery and read receipts, typing, the safety number
// notice, blocking and reporting, and no message is ever bridged twice.
func TestSynapseFeatures(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		prev := o.Metasim
		o.Metasim = func(c *metasim.Config) {
			prev(c)
			for _, name := range metasim.Networks() {
				// One report restricts, so a report shows on the Meta side at once.
				c.Network(name).Limits.ReportsBeforeRestriction = 1
			}
		}
	})
	c := e.openChat("+491701110001", "+491702220002")
	alice, room, ghost := c.alice, c.room, c.ghost
	bot := id.NewUserID("metainteropbot", kit.ServerName)
	peerJID := c.peer.JID
	// What each side sent, to check at the end that each arrived exactly once.
	var aliceTexts, peerTexts []string

	// Messages both sides refer to in later subtests.
	var (
		aliceEvt    id.EventID // Alice's "first from Matrix"
		aliceStanza string
		peerEvt     id.EventID // the peer's "first from WhatsApp"
		peerStanza  string
	)

	t.Run("FormattingToMeta", func(t *testing.T) {
		want := "*bold*, _italic_, ~strike~ and `code`"
		evtID, item := c.aliceSends(t, &event.MessageEventContent{MsgType: event.MsgText,
			Body: "bold, italic, strike and code", Format: event.FormatHTML,
			FormattedBody: "<b>bold</b>, <i>italic</i>, <del>strike</del> and <code>code</code>"}, want)
		aliceTexts = append(aliceTexts, "bold, italic, strike and code")
		if item["sender"] != c.account {
			t.Errorf("the Meta user got it from %v, want %s", item["sender"], c.account)
		}
		// The sender learns it was sent: a success status from the bridge bot, and
		// the bot's read receipt as the delivery receipt.
		status := waitFor(t, alice, 0, "the send's status", kit.IsMessageStatus(room, evtID, ""))
		if ms, _ := kit.ParseMessageStatus(status); ms.Status != "SUCCESS" || status.Sender != bot {
			t.Errorf("status %q from %s, want SUCCESS from the bot", ms.Status, status.Sender)
		}
		waitFor(t, alice, 0, "the bot's delivery receipt", kit.IsReadReceipt(room, bot, evtID))
		aliceEvt, aliceStanza = evtID, item["id"].(string)
	})

	t.Run("FormattingFromMeta", func(t *testing.T) {
		text := "*bold*, _italic_, ~strike~ and ```mono```"
		stanza, evt := c.peerSends(t, map[string]any{"text": text}, text)
		peerTexts = append(peerTexts, text)
		msg := evt.Content.AsMessage()
		if msg.Format != event.FormatHTML || msg.FormattedBody != "<strong>bold</strong>, <em>italic</em>, <del>strike</del> and <code>mono</code>" {
			t.Errorf("formatted body %q (format %q)", msg.FormattedBody, msg.Format)
		}
		peerEvt, peerStanza = evt.ID, stanza
	})

	t.Run("MentionFromMeta", func(t *testing.T) {
		// The Meta user's app writes @{number} and lists the JID; the Matrix user
		// sees a pill of themselves, named by their number, and is mentioned.
		text := "hello @" + strings.TrimSuffix(c.account, "@interop")
		_, evt := c.peerSends(t, map[string]any{"text": text, "mentions": []string{c.account}}, "hello +49 170 1110001")
		peerTexts = append(peerTexts, "hello +49 170 1110001")
		msg := evt.Content.AsMessage()
		if want := fmt.Sprintf(`hello <a href="https://matrix.to/#/%s">+49 170 1110001</a>`, alice.ID); msg.FormattedBody != want {
			t.Errorf("formatted body %q, want %q", msg.FormattedBody, want)
		}
		if msg.Mentions == nil || len(msg.Mentions.UserIDs) != 1 || msg.Mentions.UserIDs[0] != alice.ID {
			t.Errorf("m.mentions %+v, want only %s", msg.Mentions, alice.ID)
		}
	})

	t.Run("MentionToMeta", func(t *testing.T) {
		// A pill of the ghost, as Matrix clients write it, becomes @{number} with the
		// Meta user's JID in mentionedJid.
		profile, err := alice.Client.GetProfile(c.ctx, ghost)
		must(t, err)
		number := strings.TrimSuffix(peerJID, "@s.whatsapp.net")
		_, item := c.aliceSends(t, &event.MessageEventContent{MsgType: event.MsgText,
			Body: profile.DisplayName + " are you there?", Format: event.FormatHTML,
			FormattedBody: fmt.Sprintf(`<a href="https://matrix.to/#/%s">%s</a> are you there?`, ghost, profile.DisplayName),
			Mentions:      &event.Mentions{UserIDs: []id.UserID{ghost}}}, "@"+number+" are you there?")
		aliceTexts = append(aliceTexts, profile.DisplayName+" are you there?")
		mentions, _ := kit.ItemData(item)["mentions"].([]any)
		if len(mentions) != 1 || mentions[0] != peerJID {
			t.Errorf("mentions %v, want [%s]", mentions, peerJID)
		}
	})

	t.Run("ReplyFromMeta", func(t *testing.T) {
		_, evt := c.peerSends(t, map[string]any{"text": "answering you",
			"reply_to": map[string]any{"id": aliceStanza, "sender": c.account, "text": "bold, italic, strike and code"}}, "answering you")
		peerTexts = append(peerTexts, "answering you")
		if got := replyTo(evt); got != aliceEvt {
			t.Errorf("the reply points at %q, want %s", got, aliceEvt)
		}
	})

	t.Run("ReplyToMeta", func(t *testing.T) {
		content := &event.MessageEventContent{MsgType: event.MsgText, Body: "replying from Matrix"}
		content.SetReply(&event.Event{ID: peerEvt, RoomID: room, Sender: ghost})
		_, item := c.aliceSends(t, content, "replying from Matrix")
		aliceTexts = append(aliceTexts, "replying from Matrix")
		quoted := kit.ItemKey(item, "reply_to")
		if quoted["id"] != peerStanza || quoted["participant"] != peerJID {
			t.Errorf("the reply quotes %v, want id %s from %s", quoted, peerStanza, peerJID)
		}
		if quoted["text"] != "*bold*, _italic_, ~strike~ and ```mono```" {
			t.Errorf("the quote's text is %q", quoted["text"])
		}
	})

	t.Run("EditFromMeta", func(t *testing.T) {
		stanza, evt := c.peerSends(t, map[string]any{"text": "see you at 8"}, "see you at 8")
		peerTexts = append(peerTexts, "see you at 8")
		mark := alice.Mark()
		_, err := c.peer.Send(c.ctx, map[string]any{"to": c.account, "kind": "edit", "text": "see you at 9",
			"target": map[string]any{"id": stanza}})
		must(t, err)
		edit := waitFor(t, alice, mark, "the ghost's edit", kit.IsEdit(room, ghost, evt.ID, "see you at 9"))
		if body := edit.Content.AsMessage().Body; body != "* see you at 9" {
			t.Errorf("edit fallback body %q", body)
		}
	})

	t.Run("EditToMeta", func(t *testing.T) {
		evtID, item := c.aliceSends(t, &event.MessageEventContent{MsgType: event.MsgText, Body: "lunch at noon"}, "lunch at noon")
		aliceTexts = append(aliceTexts, "lunch at noon")
		edit := &event.MessageEventContent{MsgType: event.MsgText, Body: "* lunch at one"}
		edit.SetEdit(evtID)
		edit.NewContent = &event.MessageEventContent{MsgType: event.MsgText, Body: "lunch at one"}
		_, err := alice.Send(c.ctx, room, edit)
		must(t, err)
		got := c.inbox(t, "the edit", "edit", func(it map[string]any) bool { return kit.ItemKey(it, "target")["id"] == item["id"] })
		if data := kit.ItemData(got); data["text"] != "lunch at one" {
			t.Errorf("the edit's text is %q", data["text"])
		}
	})

	t.Run("DeleteFromMeta", func(t *testing.T) {
		stanza, evt := c.peerSends(t, map[string]any{"text": "oops, wrong chat"}, "oops, wrong chat")
		mark := alice.Mark()
		_, err := c.peer.Send(c.ctx, map[string]any{"to": c.account, "kind": "revoke", "target": map[string]any{"id": stanza}})
		must(t, err)
		waitFor(t, alice, mark, "the redaction of the revoked message", kit.IsRedaction(room, ghost, evt.ID))
	})

	t.Run("DeleteToMeta", func(t *testing.T) {
		evtID, item := c.aliceSends(t, &event.MessageEventContent{MsgType: event.MsgText, Body: "not meant for you"}, "not meant for you")
		_, err := alice.Redact(c.ctx, room, evtID)
		must(t, err)
		c.inbox(t, "the revoke", "revoke", func(it map[string]any) bool { return kit.ItemKey(it, "target")["id"] == item["id"] })
	})

	t.Run("ReactionsFromMeta", func(t *testing.T) {
		react := func(emoji string) {
			_, err := c.peer.Send(c.ctx, map[string]any{"to": c.account, "kind": "reaction", "text": emoji,
				"target": map[string]any{"id": aliceStanza, "sender": c.account}})
			must(t, err)
		}
		mark := alice.Mark()
		react("👍")
		// Matrix clients write emoji with their variation selector.
		first := waitFor(t, alice, mark, "the ghost's 👍", kit.IsReaction(room, ghost, aliceEvt, "👍\ufe0f"))
		// WhatsApp keeps one reaction per user: a second one replaces the first.
		mark = alice.Mark()
		react("😂")
		waitFor(t, alice, mark, "the ghost's 😂", kit.IsReaction(room, ghost, aliceEvt, "😂"))
		waitFor(t, alice, mark, "the redaction of the replaced 👍", kit.IsRedaction(room, ghost, first.ID))
		second := alice.Events(kit.IsReaction(room, ghost, aliceEvt, "😂"))[0]
		mark = alice.Mark()
		react("")
		waitFor(t, alice, mark, "the redaction of the removed 😂", kit.IsRedaction(room, ghost, second.ID))
	})

	t.Run("ReactionsToMeta", func(t *testing.T) {
		reactionID, err := alice.React(c.ctx, room, peerEvt, "👍")
		must(t, err)
		isReaction := func(text string, removed bool) func(map[string]any) bool {
			return func(it map[string]any) bool {
				data := kit.ItemData(it)
				target := kit.ItemKey(it, "target")
				gotText, _ := data["text"].(string)
				gotRemoved, _ := data["removed"].(bool)
				return target["id"] == peerStanza && gotText == text && gotRemoved == removed
			}
		}
		c.inbox(t, "Alice's 👍", "reaction", isReaction("👍", false))
		// A second reaction replaces the first, as on WhatsApp: the Meta user sees
		// the new one, and the bridge takes the old one off Matrix.
		mark := alice.Mark()
		secondID, err := alice.React(c.ctx, room, peerEvt, "😂")
		must(t, err)
		c.inbox(t, "Alice's 😂", "reaction", isReaction("😂", false))
		waitFor(t, alice, mark, "the redaction of the replaced 👍", kit.IsRedaction(room, bot, reactionID))
		_, err = alice.Redact(c.ctx, room, secondID)
		must(t, err)
		c.inbox(t, "Alice taking her 😂 back", "reaction", isReaction("", true))
	})

	t.Run("ReceiptsFromMeta", func(t *testing.T) {
		// The Meta user's phone acknowledges delivery by itself.
		waitFor(t, alice, 0, "a delivery status naming the ghost", kit.IsDeliveredTo(room, aliceEvt, ghost))
		mark := alice.Mark()
		must(t, c.peer.Receipt(c.ctx, c.account, "read", aliceStanza))
		waitFor(t, alice, mark, "the ghost's read receipt", kit.IsReadReceipt(room, ghost, aliceEvt))
	})

	t.Run("ReceiptsToMeta", func(t *testing.T) {
		must(t, alice.Client.SendReceipt(c.ctx, room, peerEvt, event.ReceiptTypeRead, nil))
		got := c.inbox(t, "Alice's read receipt", "receipt", func(it map[string]any) bool {
			return it["id"] == peerStanza && kit.ItemData(it)["receipt"] == "read"
		})
		if got["sender"] != c.account {
			t.Errorf("the receipt came from %v", got["sender"])
		}
	})

	t.Run("TypingFromMeta", func(t *testing.T) {
		mark := alice.Mark()
		must(t, c.peer.Typing(c.ctx, c.account, "composing"))
		waitFor(t, alice, mark, "the ghost typing", kit.IsTyping(room, ghost, true))
		mark = alice.Mark()
		must(t, c.peer.Typing(c.ctx, c.account, "paused"))
		waitFor(t, alice, mark, "the ghost stopping", kit.IsTyping(room, ghost, false))
	})

	t.Run("TypingToMeta", func(t *testing.T) {
		_, err := alice.Client.UserTyping(c.ctx, room, true, 20*time.Second)
		must(t, err)
		isState := func(state string) func(map[string]any) bool {
			return func(it map[string]any) bool { return kit.ItemData(it)["chat_state"] == state }
		}
		c.inbox(t, "Alice typing", "chatstate", isState("composing"))
		_, err = alice.Client.UserTyping(c.ctx, room, false, 0)
		must(t, err)
		c.inbox(t, "Alice stopping", "chatstate", isState("paused"))
	})

	t.Run("SafetyNumberChange", func(t *testing.T) {
		mark := alice.Mark()
		must(t, c.peer.ResetIdentity(c.ctx))
		// The change is announced before the first message with the new key; a
		// second later, that message must not announce it again.
		time.Sleep(1100 * time.Millisecond)
		_, err := c.peer.SendText(c.ctx, c.account, "new phone, same me")
		must(t, err)
		peerTexts = append(peerTexts, "new phone, same me")
		isNotice := func(evt *event.Event) bool {
			msg := evt.Content.AsMessage()
			return kit.IsMessage(room, ghost, "")(evt) && msg.MsgType == event.MsgNotice &&
				msg.Body == "The safety number with +49 170 2220002 (WhatsApp) changed. This can happen when they reinstall "+
					"WhatsApp or change phones; if you did not expect it, verify with them another way."
		}
		waitFor(t, alice, mark, "the safety number notice", isNotice)
		waitMessage(t, alice, mark, room, ghost, "new phone, same me")
		// Messages still reach the new phone.
		c.aliceSends(t, &event.MessageEventContent{MsgType: event.MsgText, Body: "welcome back"}, "welcome back")
		aliceTexts = append(aliceTexts, "welcome back")
		if n := len(alice.Events(isNotice)); n != 1 {
			t.Errorf("%d safety number notices for one change", n)
		}
	})

	t.Run("BlockAndUnblock", func(t *testing.T) {
		if reply := c.command(t, "block"); reply != "Blocked this contact." {
			t.Fatalf("block answered %q", reply)
		}
		// The gateway accepts the blocked contact's message and never delivers it.
		_, err := c.peer.SendText(c.ctx, c.account, "can you hear me?")
		must(t, err)
		if reply := c.command(t, "unblock"); reply != "Unblocked this contact." {
			t.Fatalf("unblock answered %q", reply)
		}
		c.peerSends(t, map[string]any{"text": "and now?"}, "and now?")
		peerTexts = append(peerTexts, "and now?")
		// Messages of one sender arrive in order: had the gateway delivered the first,
		// it would be in the room by now.
		if got := alice.Events(kit.IsMessage(room, "", "can you hear me?")); len(got) != 0 {
			t.Errorf("the message sent while blocked reached Matrix: %v", got)
		}
	})

	t.Run("Report", func(t *testing.T) {
		if reply := c.command(t, "report"); reply != "Reported 5 message(s) of this contact as spam." {
			t.Fatalf("report answered %q", reply)
		}
		info, err := c.peer.Info(c.ctx)
		must(t, err)
		if info.Restricted == nil || info.Restricted.Reason != "spam" {
			t.Fatalf("the report did not restrict the contact on Meta's side: %+v", info.Restricted)
		}
		_, err = c.peer.SendText(c.ctx, c.account, "let me out")
		if kit.StatusOf(err) != 403 {
			t.Errorf("a restricted contact's send: %v, want 403", err)
		}
		must(t, c.peer.Unrestrict(c.ctx))
	})

	t.Run("NoEchoes", func(t *testing.T) {
		// Give late duplicates a moment to show.
		time.Sleep(2 * time.Second)
		for _, text := range aliceTexts {
			got := alice.Events(kit.IsMessage(room, "", text))
			if len(got) != 1 || got[0].Sender != alice.ID {
				t.Errorf("%q appears %d times in the room: %v", text, len(got), senders(got))
			}
		}
		for _, text := range peerTexts {
			got := alice.Events(kit.IsMessage(room, "", text))
			if len(got) != 1 || got[0].Sender != ghost {
				t.Errorf("%q appears %d times in the room: %v", text, len(got), senders(got))
			}
		}
	})
}

func senders(evts []*event.Event) []id.UserID {
	out := make([]id.UserID, 0, len(evts))
	for _, evt := range evts {
		out = append(out, evt.Sender)
	}
	return out
}
