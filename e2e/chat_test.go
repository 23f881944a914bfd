//go:build synapse

package e2e

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// chat is a logged-in Matrix user with a portal to a simulated WhatsApp user.
type chat struct {
	*env
	loginID string
	account string // the Matrix user's interop JID
	peer    *kit.SimUser
	room    id.RoomID
	ghost   id.UserID
}

// openChat logs a new Matrix user in with number and starts a chat with a new
// simulated WhatsApp user peerNumber, through the provisioning API as a client would.
func (e *env) openChat(number, peerNumber string) *chat {
	e.t.Helper()
	return e.openChatAs(e.user("alice"), number, peerNumber)
}

// openEncryptedChat starts a stack with end-to-bridge encryption allowed, default
// and required, and opens a chat for a Matrix user whose client encrypts; it returns
// once the portal is encrypted.
func openEncryptedChat(t *testing.T, localpart, number, peerNumber string) *chat {
	t.Helper()
	e := startStack(t, false, func(o *kit.StackOptions) {
		o.BridgeConfig = map[string]any{
			"encryption.allow":   true,
			"encryption.default": true,
			"encryption.require": true,
		}
	})
	alice, err := e.st.Synapse.NewCryptoUser(e.ctx, localpart, t.TempDir())
	e.must(err)
	t.Cleanup(alice.Close)
	c := e.openChatAs(alice, number, peerNumber)
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "the portal's encryption", func(evt *event.Event) bool {
		return evt.RoomID == c.room && evt.Type == event.StateEncryption
	})
	e.must(err)
	return c
}

// openChatAs is openChat for a given Matrix user.
func (e *env) openChatAs(alice *kit.User, number, peerNumber string) *chat {
	e.t.Helper()
	loginID, err := e.st.LoginBridge(e.ctx, alice, "whatsapp", number)
	e.must(err)
	_, err = e.st.WaitLoginState(e.ctx, alice, loginID, "CONNECTED", 30*time.Second)
	e.must(err)
	peer, err := e.st.Sim.NewUser(e.ctx, peerNumber, nil)
	e.must(err)
	room, err := e.st.StartChat(e.ctx, alice, loginID, peerNumber)
	e.must(err)
	if room == "" {
		e.t.Fatal("start chat returned no room")
	}
	// The portal invites the user; the kit's client joins.
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "own join in the portal", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == alice.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	members, err := alice.JoinedMembers(e.ctx, room)
	e.must(err)
	c := &chat{env: e, loginID: loginID, account: "7-" + number[1:] + "@interop", peer: peer, room: room}
	for _, m := range members {
		if m != alice.ID && m.Localpart() != "metainteropbot" {
			c.ghost = m
		}
	}
	if c.ghost == "" {
		e.t.Fatalf("no ghost among the portal's members %v", members)
	}
	e.alice = alice
	return c
}

// A Matrix user logs in, starts a chat with a WhatsApp user by number, and text goes
// both ways: the Meta user's message appears from their ghost, named by number and
// network, and the Matrix user's reply reaches the Meta user's device.
func TestSynapseTextBothWays(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "SQLite"
		if pg {
			name = "PostgreSQL"
		}
		t.Run(name, func(t *testing.T) {
			e := startStack(t, pg, nil)
			c := e.openChat("+491701110001", "+491702220002")

			profile, err := e.alice.Client.GetProfile(e.ctx, c.ghost)
			e.must(err)
			if profile.DisplayName != "+49 170 2220002 (WhatsApp)" {
				t.Errorf("ghost is named %q", profile.DisplayName)
			}

			mark := e.alice.Mark()
			sent, err := c.peer.SendText(e.ctx, c.account, "hello from *WhatsApp*")
			e.must(err)
			evt := waitMessage(t, e.alice, mark, c.room, c.ghost, "hello from *WhatsApp*")
			if msg := evt.Content.AsMessage(); msg.FormattedBody != "hello from <strong>WhatsApp</strong>" {
				t.Errorf("formatted body %q", msg.FormattedBody)
			}
			// The Meta user's app shows the message delivered.
			_, err = c.peer.WaitInbox(e.ctx, 30*time.Second, "a delivery receipt", url.Values{"kind": {"receipt"}, "id": {sent.ID}},
				func(item map[string]any) bool {
					data, _ := item["data"].(map[string]any)
					return data["receipt"] == "delivered"
				})
			e.must(err)

			_, err = e.alice.SendText(e.ctx, c.room, "hello from Matrix")
			e.must(err)
			_, err = c.peer.WaitInbox(e.ctx, 30*time.Second, "the Matrix user's text", url.Values{"kind": {"text"}}, inboxText("hello from Matrix"))
			e.must(err)
		})
	}
}
