package interop

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
)

func TestPreKeyUploadAndRefill(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	if count, uploads := gw.preKeyCount(aliceJID); count != signal.PreKeyBatch || uploads != 1 {
		t.Fatalf("after <success new>: %d prekeys in %d uploads", count, uploads)
	}

	// Enough left: a reconnect checks the count and uploads nothing. Key maintenance
	// runs before Connected reaches the Handler, so the check is done once it arrives.
	gw.drop(aliceJID)
	waitEvent[*Connected](t, alice)
	if _, uploads := gw.preKeyCount(aliceJID); uploads != 1 {
		t.Fatalf("uploaded again with %d prekeys left", signal.PreKeyBatch)
	}

	// Fewer than 10 left: the next connection refills.
	gw.mu.Lock()
	gw.keys[aliceJID].prekeys = gw.keys[aliceJID].prekeys[:5]
	gw.mu.Unlock()
	gw.drop(aliceJID)
	if up := waitEvent[*PreKeysUploaded](t, alice); up.Reason != UploadLow || up.Count != signal.PreKeyBatch {
		t.Fatalf("refill %+v", up)
	}
	if count, _ := gw.preKeyCount(aliceJID); count != 5+signal.PreKeyBatch {
		t.Fatalf("gateway holds %d prekeys", count)
	}

	// The gateway's prekey notification does the same, and is acked.
	gw.notify(aliceJID, stanza.Node{Tag: "notification", Attrs: stanza.Attrs{"from": "s.whatsapp.net", "id": "N1", "type": "encrypt"},
		Content: []stanza.Node{{Tag: "count", Attrs: stanza.Attrs{"value": "3"}}}})
	if up := waitEvent[*PreKeysUploaded](t, alice); up.Reason != UploadLow {
		t.Fatalf("upload after notification %+v", up)
	}
	waitUntil(t, func() bool { return gw.pendingFor(aliceJID) == 0 })
	if _, uploads := gw.preKeyCount(aliceJID); uploads != 3 {
		t.Fatalf("%d uploads, want 3", uploads)
	}
	// Newly uploaded keys are new ones: none repeats an id the gateway already had.
	gw.mu.Lock()
	seen := map[uint32]bool{}
	for _, k := range gw.keys[aliceJID].prekeys {
		if seen[k.ID] {
			t.Errorf("prekey %d uploaded twice", k.ID)
		}
		seen[k.ID] = true
	}
	gw.mu.Unlock()
}

func TestSignedPreKeyRotation(t *testing.T) {
	gw := newTestGateway(t)
	var skew atomic.Int64 // how far the Account's clock runs ahead
	alice := startNew(t, gw, aliceJID, func(c *AccountConfig) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	gw.mu.Lock()
	first := gw.keys[aliceJID].spk
	gw.mu.Unlock()

	// A week later the next connection rotates it.
	skew.Store(int64(signal.SignedPreKeyRotation + time.Hour))
	gw.drop(aliceJID)
	rot := waitEvent[*SignedPreKeyRotated](t, alice)
	gw.mu.Lock()
	got := gw.keys[aliceJID].spk
	gw.mu.Unlock()
	if rot.ID == first.ID || got.ID != rot.ID || got.Pub == first.Pub {
		t.Fatalf("rotated %d → %d (gateway has %d)", first.ID, rot.ID, got.ID)
	}

	// Others can still start sessions: the new key verifies.
	bob := startNew(t, gw, bobJID)
	bob.send(t, aliceJID, textMsg("after rotation"))
	alice.receiveText(t, bobJID, "after rotation")
}

// A reinstalled account (new identity, gateway still holding the old identity's
// keys) is not "new" and has enough prekeys, so only the rotation reaches the gateway;
// its refusal must lead to a full upload, or peers would keep getting the old keys.
func TestRotationRefusalRepairsKeys(t *testing.T) {
	gw := newTestGateway(t)
	old := startNew(t, gw, aliceJID)
	old.stop()

	acc, err := memstore.NewAccount(aliceJID)
	if err != nil {
		t.Fatal(err)
	}
	alice := startAccountOn(t, gw, memstore.New(acc))
	if up := waitEvent[*PreKeysUploaded](t, alice); up.Reason != UploadRepair {
		t.Fatalf("upload after the refused rotation: %+v", up)
	}
	gw.mu.Lock()
	got := gw.keys[aliceJID].identity
	gw.mu.Unlock()
	if got != acc.IdentityKey.PublicKey().PublicKey().PublicKey() {
		t.Fatal("the gateway still holds the old identity")
	}

	bob := startNew(t, gw, bobJID)
	bob.send(t, aliceJID, textMsg("after reinstall"))
	alice.receiveText(t, bobJID, "after reinstall")
}
