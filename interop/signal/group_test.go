package signal

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// distribute wraps the sender's distribution message 1:1 for each device lacking the
// key, as the connection layer does, and records them as holders.
func distribute(t *testing.T, group jid.JID, from *party, skdm []byte, members []*party) {
	t.Helper()
	ctx := context.Background()
	var devices []jid.JID
	byJID := map[jid.JID]*party{}
	for _, p := range members {
		devices = append(devices, p.jid)
		byJID[p.jid] = p
	}
	lacking, err := from.m.DevicesLackingSenderKey(ctx, group, devices)
	if err != nil {
		t.Fatal(err)
	}
	parts, missing, err := from.m.EncryptForDevices(ctx, lacking, skdm)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range missing {
		connect(t, from, byJID[d])
	}
	more, _, err := from.m.EncryptForDevices(ctx, missing, skdm)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range append(parts, more...) {
		to := byJID[part.Device]
		// The distribution is processed while handling the 1:1 message, in its
		// transaction.
		_, err := to.m.Decrypt(ctx, from.jid, part.Type, part.Ciphertext, func(ctx context.Context, pt []byte) error {
			return to.m.ProcessSenderKeyDistribution(ctx, group, from.jid, pt)
		})
		if err != nil {
			t.Fatalf("distribution to %s: %v", to.jid, err)
		}
	}
	if err := from.m.MarkSenderKeyDelivered(ctx, group, lacking); err != nil {
		t.Fatal(err)
	}
}

func groupDecrypt(to, from *party, skmsg []byte) (string, error) {
	var got string
	err := to.m.GroupDecrypt(context.Background(), groupJID, from.jid, skmsg, func(_ context.Context, pt []byte) error {
		got = string(pt)
		return nil
	})
	return got, err
}

func sendGroup(t *testing.T, from *party, text string, members []*party) []byte {
	t.Helper()
	skmsg, skdm, err := from.m.GroupEncrypt(context.Background(), groupJID, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	distribute(t, groupJID, from, skdm, members)
	return skmsg
}

// TestGroup: three members (Bob with two devices); every member's skmsg decrypts for
// the holders of its key; after Carol is removed and Alice resets her key, Carol
// cannot read Alice's messages.
func TestGroup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		ctx := context.Background()
		alice := newParty(t, newStore, aliceJID)
		bob0, bob1 := newParty(t, newStore, bob0JID), newParty(t, newStore, bob1JID)
		carol := newParty(t, newStore, carolJID)
		everyone := []*party{alice, bob0, bob1, carol}
		others := func(p *party, of []*party) []*party {
			return slices.DeleteFunc(slices.Clone(of), func(q *party) bool { return q == p })
		}

		for round, text := range []string{"first", "second"} {
			for _, sender := range []*party{alice, bob0, carol} {
				skmsg := sendGroup(t, sender, text, others(sender, everyone))
				for _, r := range others(sender, everyone) {
					if got, err := groupDecrypt(r, sender, skmsg); err != nil || got != text {
						t.Fatalf("round %d: %s ← %s: %q, %v", round, r.jid, sender.jid, got, err)
					}
				}
			}
		}
		// Holders were recorded: nobody lacks Alice's key now.
		if lacking, _ := alice.m.DevicesLackingSenderKey(ctx, groupJID, []jid.JID{bob0JID, bob1JID, carolJID}); len(lacking) != 0 {
			t.Fatalf("devices lacking the key after distribution: %v", lacking)
		}

		// Carol is removed.
		if err := alice.m.ResetSenderKey(ctx, groupJID); err != nil {
			t.Fatal(err)
		}
		remaining := []*party{bob0, bob1}
		lacking, _ := alice.m.DevicesLackingSenderKey(ctx, groupJID, []jid.JID{bob0JID, bob1JID})
		if len(lacking) != 2 {
			t.Fatalf("after reset, lacking = %v", lacking)
		}
		skmsg := sendGroup(t, alice, "without carol", remaining)
		for _, r := range remaining {
			if got, err := groupDecrypt(r, alice, skmsg); err != nil || got != "without carol" {
				t.Fatalf("%s after reset: %q, %v", r.jid, got, err)
			}
		}
		_, err := groupDecrypt(carol, alice, skmsg)
		wantErr(t, err, ErrNoSenderKey)
		if !IsDecryptError(err) {
			t.Fatal("missing sender key is not a decrypt error")
		}

		// Duplicates and redelivered distributions.
		_, err = groupDecrypt(bob0, alice, skmsg)
		wantErr(t, err, ErrDuplicate)
		_, skdm, _ := alice.m.GroupEncrypt(ctx, groupJID, []byte("x"))
		if err := bob0.m.ProcessSenderKeyDistribution(ctx, groupJID, alice.jid, skdm); err != nil {
			t.Fatal(err)
		}
		_, err = groupDecrypt(bob0, alice, skmsg)
		wantErr(t, err, ErrDuplicate) // the redelivered key did not rewind the chain
	})
}

// TestGroupHandleErrorRollsBack: a failed handling leaves the sender key chain as it
// was, so the same skmsg decrypts later.
func TestGroupHandleErrorRollsBack(t *testing.T) {
	ctx := context.Background()
	newStore := memBackend.open(t)
	alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
	skmsg := sendGroup(t, alice, "group text", []*party{bob})
	for range 2 {
		err := bob.m.GroupDecrypt(ctx, groupJID, alice.jid, skmsg, func(context.Context, []byte) error { return errHandle })
		var he *HandleError
		if !errors.As(err, &he) || !errors.Is(err, errHandle) {
			t.Fatalf("GroupDecrypt with failing handle = %v", err)
		}
	}
	if got, err := groupDecrypt(bob, alice, skmsg); err != nil || got != "group text" {
		t.Fatalf("after rollback: %q, %v", got, err)
	}
	// A distribution processed inside a failed 1:1 handling rolls back with it.
	carol := newParty(t, newStore, carolJID)
	connect(t, alice, carol)
	_, skdm, _ := alice.m.GroupEncrypt(ctx, groupJID, []byte("y"))
	part := encrypt(t, alice, carol, string(skdm))
	_, err := carol.m.Decrypt(ctx, alice.jid, part.Type, part.Ciphertext, func(ctx context.Context, pt []byte) error {
		if err := carol.m.ProcessSenderKeyDistribution(ctx, groupJID, alice.jid, pt); err != nil {
			return err
		}
		return errHandle
	})
	wantErr(t, err, errHandle)
	rec, _ := carol.m.Store().LoadSenderKey(ctx, senderKeyName(groupJID, alice.jid))
	if rec != nil && !rec.IsEmpty() {
		t.Fatal("sender key from a rolled back message was kept")
	}
}
