//go:build synapse

package e2e

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// With end-to-bridge encryption on (goolm, no C library), the portal is an encrypted
// room: the Meta user's message reaches the Matrix user's device encrypted and
// decrypts there, and the Matrix user's encrypted reply reaches the Meta user.
func TestSynapseEndToBridgeEncryption(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		o.BridgeConfig = map[string]any{
			"encryption.allow":   true,
			"encryption.default": true,
			"encryption.require": true,
		}
	})
	alice, err := e.st.Synapse.NewCryptoUser(e.ctx, "cryptoalice", t.TempDir())
	e.must(err)
	t.Cleanup(alice.Close)
	loginID, err := e.st.LoginBridge(e.ctx, alice, "whatsapp", "+491705550005")
	e.must(err)
	_, err = e.st.WaitLoginState(e.ctx, alice, loginID, "CONNECTED", 30*time.Second)
	e.must(err)
	peer, err := e.st.Sim.NewUser(e.ctx, "+491706660006", nil)
	e.must(err)
	room, err := e.st.StartChat(e.ctx, alice, loginID, "+491706660006")
	e.must(err)
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "the portal's encryption", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateEncryption
	})
	e.must(err)
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "own join in the portal", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == alice.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)

	mark := alice.Mark()
	_, err = peer.SendText(e.ctx, "7-491705550005@interop", "a secret from WhatsApp")
	e.must(err)
	if _, err := alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "the encrypted event", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.EventEncrypted
	}); err != nil {
		t.Fatalf("the message did not arrive encrypted: %v", err)
	}
	evt := waitMessage(t, alice, mark, room, "", "a secret from WhatsApp")
	if evt.Mautrix.WasEncrypted != true {
		t.Error("the decrypted message was not marked as having been encrypted")
	}

	_, err = alice.SendText(e.ctx, room, "a secret from Matrix")
	e.must(err)
	_, err = peer.WaitInbox(e.ctx, 30*time.Second, "the Matrix user's encrypted text", url.Values{"kind": {"text"}}, inboxText("a secret from Matrix"))
	e.must(err)
}
