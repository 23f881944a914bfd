package signal

import (
	"context"
	"testing"
	"time"

	"go.mau.fi/libsignal/ecc"
)

func TestPreKeyUpload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		ctx := context.Background()
		alice := newParty(t, newStore, aliceJID)
		up, err := alice.m.PreKeyUpload(ctx, PreKeyBatch)
		if err != nil {
			t.Fatal(err)
		}
		acc := alice.m.Store().Account()
		if up.RegistrationID != acc.RegistrationID || up.IdentityKey != acc.IdentityKey.PublicKey().PublicKey().PublicKey() {
			t.Fatal("upload does not carry the account's registration id and identity")
		}
		if len(up.PreKeys) != PreKeyBatch {
			t.Fatalf("%d prekeys, want %d", len(up.PreKeys), PreKeyBatch)
		}
		ids := map[uint32]bool{}
		for _, k := range up.PreKeys {
			if k.ID == 0 || k.ID > maxKeyID || ids[k.ID] {
				t.Fatalf("bad or repeated prekey id %d", k.ID)
			}
			ids[k.ID] = true
			// The published key must be the one the store will decrypt with.
			rec, err := alice.m.Store().LoadPreKey(ctx, k.ID)
			if err != nil || rec == nil {
				t.Fatalf("LoadPreKey(%d) = %v, %v", k.ID, rec, err)
			}
			if pub, _ := publicOf(rec.KeyPair()); pub != k.Public {
				t.Fatalf("prekey %d: uploaded public key does not match the private key", k.ID)
			}
		}
		b := up.Bundle(&up.PreKeys[0])
		if err := b.Verify(); err != nil {
			t.Fatalf("signed prekey of the upload: %v", err)
		}

		// Not marked uploaded: the same keys are offered again.
		again, err := alice.m.PreKeyUpload(ctx, 10)
		if err != nil || len(again.PreKeys) != 10 || again.PreKeys[0] != up.PreKeys[0] || again.SignedPreKey != up.SignedPreKey {
			t.Fatalf("second upload did not reuse unuploaded keys: %v", err)
		}
		if err := alice.m.MarkUploaded(ctx, up); err != nil {
			t.Fatal(err)
		}
		if n, _ := alice.m.Store().UploadedPreKeyCount(ctx); n != PreKeyBatch {
			t.Fatalf("uploaded count %d", n)
		}
		next, err := alice.m.PreKeyUpload(ctx, 5)
		if err != nil || len(next.PreKeys) != 5 || ids[next.PreKeys[0].ID] {
			t.Fatalf("upload after marking reused a key: %v", err)
		}

		// A bundle from the upload makes a working session.
		bob := newParty(t, newStore, bob0JID)
		if _, err := bob.m.ProcessBundle(ctx, alice.jid, &b); err != nil {
			t.Fatal(err)
		}
		mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "via upload"), "via upload")
		if rec, _ := alice.m.Store().LoadPreKey(ctx, up.PreKeys[0].ID); rec != nil {
			t.Fatal("consumed one-time prekey was kept")
		}
	})
}

func TestRotateSignedPreKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		ctx := context.Background()
		alice := newParty(t, newStore, aliceJID)
		start := time.Now().Truncate(time.Millisecond)
		day := 24 * time.Hour
		steps := []struct {
			at       time.Duration
			wantID   uint32 // 0: no rotation
			wantKept []uint32
		}{
			{0, 1, []uint32{1}},
			{6 * day, 0, []uint32{1}},
			{7 * day, 2, []uint32{1, 2}},
			{15 * day, 3, []uint32{1, 2, 3}},
			{36 * day, 4, []uint32{2, 3, 4}}, // key 1 is over 30 days old
			{60 * day, 5, []uint32{4, 5}},
		}
		for _, s := range steps {
			spk, err := alice.m.RotateSignedPreKey(ctx, start.Add(s.at))
			if err != nil {
				t.Fatal(err)
			}
			if (spk == nil) != (s.wantID == 0) || (spk != nil && spk.ID != s.wantID) {
				t.Fatalf("day %v: rotated %+v, want id %d", s.at/day, spk, s.wantID)
			}
			if spk != nil {
				b := PreKeyBundle{IdentityKey: alice.m.identityPublic(), SignedPreKey: *spk}
				if err := b.Verify(); err != nil {
					t.Fatalf("rotated key: %v", err)
				}
			}
			recs, err := alice.m.Store().LoadSignedPreKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var kept []uint32
			for _, r := range recs {
				kept = append(kept, r.ID())
			}
			if !equalIDs(kept, s.wantKept) {
				t.Fatalf("day %v: kept %v, want %v", s.at/day, kept, s.wantKept)
			}
		}
		// The upload carries the newest signed prekey.
		up, err := alice.m.PreKeyUpload(ctx, 1)
		if err != nil || up.SignedPreKey.ID != 5 {
			t.Fatalf("upload signed prekey %d, %v", up.SignedPreKey.ID, err)
		}
	})
}

func equalIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPrekeyMessageAfterRotation: a session started on the previous signed prekey
// still works after a rotation, and fails clearly once that key was pruned.
func TestPrekeyMessageAfterRotation(t *testing.T) {
	ctx := context.Background()
	newStore := memBackend.open(t)
	alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
	now := time.Now()
	if _, err := bob.m.RotateSignedPreKey(ctx, now.Add(-8*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	connect(t, alice, bob)
	old := encrypt(t, alice, bob, "on the old key")
	if spk, err := bob.m.RotateSignedPreKey(ctx, now); err != nil || spk == nil {
		t.Fatalf("rotation: %v, %v", spk, err)
	}
	mustDecrypt(t, bob, alice, old, "on the old key")

	carol := newParty(t, newStore, carolJID)
	connect(t, carol, bob)
	stale := encrypt(t, carol, bob, "too late")
	if _, err := bob.m.RotateSignedPreKey(ctx, now.Add(60*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.m.RotateSignedPreKey(ctx, now.Add(68*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, _, err := decrypt(bob, carol, stale)
	wantErr(t, err, ErrUnknownPreKey)
}

func TestBundleLibsignal(t *testing.T) {
	kp, _ := ecc.GenerateKeyPair()
	b := PreKeyBundle{RegistrationID: 7, SignedPreKey: SignedPreKey{ID: 3}, PreKey: &PreKey{ID: 9, Public: kp.PublicKey().PublicKey()}}
	lb := b.Libsignal(2)
	if lb.RegistrationID() != 7 || lb.DeviceID() != 2 || lb.SignedPreKeyID() != 3 || lb.PreKeyID().IsEmpty || lb.PreKeyID().Value != 9 ||
		lb.PreKey().PublicKey() != kp.PublicKey().PublicKey() {
		t.Fatal("conversion lost a field")
	}
	b.PreKey = nil
	if lb = b.Libsignal(0); !lb.PreKeyID().IsEmpty || lb.PreKey() != nil {
		t.Fatal("absent one-time prekey is not empty/nil")
	}
}
