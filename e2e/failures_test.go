//go:build synapse

package e2e

import (
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

// rateWindow and rateMax are the gateway's message limit in TestSynapseFailures, small
// enough that a burst from the Matrix user runs into it.
const (
	rateWindow = 4 * time.Second
	rateMax    = 3
)

// refusedSend sends text from the Matrix user and checks that the sender learns of
// the refusal as a client shows it: a failed message status with reason and
// message, and the bot's notice replying to the message with the same words. The
// Meta user never receives it.
func (c *chat) refusedSend(t *testing.T, text, reason, message string) {
	t.Helper()
	bot := id.NewUserID("metainteropbot", kit.ServerName)
	mark := c.alice.Mark()
	evtID, err := c.alice.SendText(c.ctx, c.room, text)
	must(t, err)
	statusEvt := waitFor(t, c.alice, mark, "the failure status", kit.IsMessageStatus(c.room, evtID, ""))
	ms, _ := kit.ParseMessageStatus(statusEvt)
	// bridgev2 marks them FAIL_RETRIABLE unless the connector says otherwise; either
	// is a failure to a client.
	if !strings.HasPrefix(ms.Status, "FAIL_") || ms.Reason != reason || ms.Message != message {
		t.Errorf("status %s, reason %q, message %q; want FAIL_*, %q, %q", ms.Status, ms.Reason, ms.Message, reason, message)
	}
	notice := waitFor(t, c.alice, mark, "the failure notice", func(evt *event.Event) bool {
		return kit.IsMessage(c.room, bot, "")(evt) && replyTo(evt) == evtID
	})
	msg := notice.Content.AsMessage()
	if want := "\u26a0\ufe0f Your message was not bridged: " + message; msg.MsgType != event.MsgNotice || msg.Body != want {
		t.Errorf("notice %s %q, want m.notice %q", msg.MsgType, msg.Body, want)
	}
	items, _, err := c.peer.Inbox(c.ctx, 0, 0, url.Values{"kind": {"text"}})
	must(t, err)
	for _, item := range items {
		if inboxText(text)(item) {
			t.Errorf("the refused message reached the Meta user: %v", item)
		}
	}
}

// The failures a Matrix user can meet in a 1:1 chat, through the real Synapse, the
// bridge process and metasim: sends Meta refuses become a failed message status and
// a notice that says why, a number nobody can reach is refused up front, a
// rate-limited send waits and arrives, and a message that does not decrypt shows a
// notice that the message replaces once the sender's phone sent it again.
func TestSynapseFailures(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		prev := o.Metasim
		o.Metasim = func(c *metasim.Config) {
			prev(c)
			for _, name := range metasim.Networks() {
				l := &c.Network(name).Limits
				l.HourlyMessages, l.HourlyWindow = rateMax, metasim.Duration(rateWindow)
			}
		}
	})
	c := e.openChat("+491701110001", "+491702220002")
	alice, room, ghost := c.alice, c.room, c.ghost

	optedOut := "The recipient cannot be reached: they have not turned on third-party chats for this service on WhatsApp"
	t.Run("OptedOutBeforeFirstSend", func(t *testing.T) {
		// The gateway lists no devices of a user who turned third-party chats off.
		must(t, c.peer.SetOptIn(c.ctx))
		c.refusedSend(t, "are you there?", "m.no_permission", optedOut)
		must(t, c.peer.SetOptIn(c.ctx, kit.IntegratorID))
		_, err := alice.SendText(c.ctx, room, "and now?")
		must(t, err)
		c.inbox(t, "the text after opting in again", "text", inboxText("and now?"))
	})

	t.Run("OptedOutLater", func(t *testing.T) {
		// The bridge knows the phone's keys by now and sends; the gateway refuses.
		must(t, c.peer.SetOptIn(c.ctx))
		c.refusedSend(t, "are you still there?", "m.no_permission", optedOut+", or blocked it")
		must(t, c.peer.SetOptIn(c.ctx, kit.IntegratorID))
		_, err := alice.SendText(c.ctx, room, "back again?")
		must(t, err)
		c.inbox(t, "the text after opting in again", "text", inboxText("back again?"))
	})

	refusals := []struct {
		name           string
		code           int
		reason, notice string
	}{
		{"NotFound", 404, "m.event_not_handled", "WhatsApp has no user 491702220002@s.whatsapp.net"},
		{"NotAcceptable", 406, "com.beeper.unsupported_event", "WhatsApp does not accept this kind of message over third-party chats"},
		{"TooLarge", 413, "com.beeper.unsupported_event", "The message is too large for Meta's gateway"},
	}
	for _, tc := range refusals {
		t.Run("Refused"+tc.name, func(t *testing.T) {
			must(t, e.st.Sim.Fault(c.ctx, c.account, "refuse", map[string]any{"count": 1, "code": tc.code}))
			c.refusedSend(t, fmt.Sprintf("this one gets a %d", tc.code), tc.reason, tc.notice)
		})
	}

	t.Run("Restricted", func(t *testing.T) {
		must(t, e.st.Sim.Call(c.ctx, "POST", "/v1/accounts/"+c.account+"/restrict", map[string]any{"duration": "10m"}, nil))
		c.refusedSend(t, "let me talk", "m.no_permission", "Your account is restricted from sending after spam reports")
		must(t, e.st.Sim.Call(c.ctx, "DELETE", "/v1/accounts/"+c.account+"/restrict", nil, nil))
	})

	t.Run("UnknownNumber", func(t *testing.T) {
		_, err := e.st.StartChat(c.ctx, alice, c.loginID, "+491709999999")
		if kit.StatusOf(err) != 404 {
			t.Fatalf("starting a chat with a number nobody has: %v, want 404", err)
		}
		want := "+49 170 9999999 can't be reached from this service: they have not turned on third-party chats on WhatsApp or have not allowed this service"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the answer does not say %q: %v", want, err)
		}
	})

	t.Run("RateLimited", func(t *testing.T) {
		// Let the earlier sends leave the window, then send more than it allows.
		time.Sleep(rateWindow)
		const n = rateMax + 2
		events := make([]id.EventID, n)
		for i := range n {
			evtID, err := alice.SendText(c.ctx, room, fmt.Sprintf("burst %d", i+1))
			must(t, err)
			events[i] = evtID
		}
		received := make([]time.Time, n)
		for i := range n {
			item := c.inbox(t, fmt.Sprintf("burst %d", i+1), "text", inboxText(fmt.Sprintf("burst %d", i+1)))
			at, err := time.Parse(time.RFC3339Nano, item["received_at"].(string))
			must(t, err)
			received[i] = at
			waitFor(t, alice, 0, fmt.Sprintf("burst %d's success", i+1), kit.IsMessageStatus(room, events[i], "SUCCESS"))
		}
		// The gateway refused the sends over the limit with 429; the bridge waited
		// for the window and sent them again.
		if gap := received[rateMax].Sub(received[0]); gap < rateWindow-time.Second {
			t.Errorf("send %d arrived %s after the first, inside the %s window", rateMax+1, gap, rateWindow)
		}
		for i := 1; i < n; i++ {
			if received[i].Before(received[i-1]) {
				t.Errorf("burst %d arrived before burst %d", i+1, i)
			}
		}
		for _, evt := range alice.Events(func(evt *event.Event) bool { return evt.RoomID == room }) {
			if ms, ok := kit.ParseMessageStatus(evt); ok && ms.Status != "SUCCESS" && ms.RelatesTo.EventID != "" {
				for i, src := range events {
					if ms.RelatesTo.EventID == src {
						t.Errorf("burst %d got status %s %q", i+1, ms.Status, ms.Message)
					}
				}
			}
		}
	})

	t.Run("Undecryptable", func(t *testing.T) {
		// The bridge loses its session with the Meta user's phone (a restored
		// backup, say): the phone's next message cannot be decrypted.
		pid := e.st.Bridge.PID()
		e.st.Bridge.Stop()
		removed, err := e.st.Bridge.ExecSQLite(c.ctx, "DELETE FROM interop_session")
		must(t, err)
		if removed == 0 {
			t.Fatal("the bridge had no session to lose")
		}
		must(t, e.st.Bridge.Start(c.ctx))
		if e.st.Bridge.PID() == pid {
			t.Fatal("the bridge did not restart")
		}
		_, err = e.st.WaitLoginState(c.ctx, alice, c.loginID, "CONNECTED", waitTimeout)
		must(t, err)

		mark := alice.Mark()
		_, err = c.peer.SendText(c.ctx, c.account, "can you read this?")
		must(t, err)
		notice := waitFor(t, alice, mark, "the undecryptable notice", func(evt *event.Event) bool {
			return kit.IsMessage(room, ghost, "")(evt) && evt.Content.AsMessage().MsgType == event.MsgNotice
		})
		want := "This message could not be decrypted. Your contact's app was asked to send it again; it will replace this notice when it arrives."
		if body := notice.Content.AsMessage().Body; body != want {
			t.Errorf("notice %q, want %q", body, want)
		}
		// The retry receipt makes the phone send it again with a new session, and
		// the message takes the notice's place.
		waitFor(t, alice, mark, "the message replacing the notice", kit.IsEdit(room, ghost, notice.ID, "can you read this?"))
		if got := alice.Events(kit.IsMessage(room, "", "can you read this?")); len(got) != 0 {
			t.Errorf("the message also came as a new message: %d", len(got))
		}
		// And the new session works both ways.
		c.peerSends(t, map[string]any{"text": "and this?"}, "and this?")
		_, err = alice.SendText(c.ctx, room, "loud and clear")
		must(t, err)
		c.inbox(t, "the reply after the new session", "text", inboxText("loud and clear"))
	})
}
