//go:build synapse

package e2e

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
)

// With end-to-bridge encryption on (goolm, no C library), the portal is an encrypted
// room: the Meta user's message reaches the Matrix user's device encrypted and
// decrypts there, and the Matrix user's encrypted reply reaches the Meta user.
func TestSynapseEndToBridgeEncryption(t *testing.T) {
	c := openEncryptedChat(t, "cryptoalice", "+491705550005", "+491706660006")
	e, alice, peer, room := c.env, c.alice, c.peer, c.room
	mark := alice.Mark()
	_, err := peer.SendText(e.ctx, c.account, "a secret from WhatsApp")
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
