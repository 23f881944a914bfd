package sqlstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/util/keyhelper"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// TestLibsignalRoundTrip runs a real conversation between two accounts; in the
// "from SQL" case every step uses new containers, so each record is decoded from SQL.
func TestLibsignalRoundTrip(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		t.Run(map[bool]string{false: "cached", true: "from SQL"}[fresh], func(t *testing.T) {
			sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
				ctx := context.Background()
				c := newContainer(t, db)
				alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
				pa, pb := newPeer(alice, bob), newPeer(bob, alice)
				pa.startSession(t, bundleFor(t, bob))
				from, to := pa, pb
				for i := range 8 {
					if fresh {
						from.s, to.s = reopen(t, c, from.s), reopen(t, c, to.s)
					}
					plaintext := fmt.Appendf(nil, "message %d", i)
					got, err := to.decrypt(ctx, from.encrypt(t, ctx, plaintext), i == 0)
					if err != nil || !bytes.Equal(got, plaintext) {
						t.Fatalf("message %d: got %q, %v", i, got, err)
					}
					if i%3 != 2 { // sometimes the same side sends twice in a row
						from, to = to, from
					}
				}
				// The one-time prekey Alice used is consumed.
				if ok, _ := bob.ContainsPreKey(ctx, 1); ok {
					t.Error("the used one-time prekey was not removed")
				}
			})
		})
	}
}

func TestSessionMethods(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		bobAddr := bobJID.SignalAddress()
		otherDevice := protocol.NewSignalAddress(bobJID.SignalName(), 7)
		if rec, err := alice.LoadSession(ctx, bobAddr); err != nil || rec == nil || !rec.IsFresh() {
			t.Fatalf("LoadSession without session = %v, %v; want a fresh record", rec, err)
		}
		converse(t, alice, bob)
		rec, err := alice.LoadSession(ctx, bobAddr)
		if err != nil || rec.IsFresh() {
			t.Fatalf("LoadSession = %v, %v", rec, err)
		}
		if err = alice.StoreSession(ctx, otherDevice, rec); err != nil {
			t.Fatal(err)
		}
		for _, s := range []store.Store{alice, reopen(t, c, alice)} {
			devs, err := s.GetSubDeviceSessions(ctx, bobJID.SignalName())
			if err != nil || !slices.Equal(devs, []uint32{3, 7}) {
				t.Errorf("GetSubDeviceSessions = %v, %v; want [3 7]", devs, err)
			}
			if got := sessionBytes(t, ctx, s, otherDevice); !bytes.Equal(got, rec.Serialize()) {
				t.Error("stored session did not round-trip")
			}
		}
		if err = alice.DeleteSession(ctx, otherDevice); err != nil {
			t.Fatal(err)
		}
		for _, s := range []store.Store{alice, reopen(t, c, alice)} {
			if ok, err := s.ContainsSession(ctx, otherDevice); err != nil || ok {
				t.Errorf("ContainsSession after DeleteSession = %v, %v", ok, err)
			}
			if ok, err := s.ContainsSession(ctx, bobAddr); err != nil || !ok {
				t.Errorf("DeleteSession removed another device: %v, %v", ok, err)
			}
		}
		if err = alice.DeleteSessionsOf(ctx, bobJID.SignalName()); err != nil {
			t.Fatal(err)
		}
		for _, s := range []store.Store{alice, reopen(t, c, alice)} {
			if ok, err := s.ContainsSession(ctx, bobAddr); err != nil || ok {
				t.Errorf("ContainsSession after DeleteSessionsOf = %v, %v", ok, err)
			}
		}
		if err = alice.StoreSession(ctx, bobAddr, rec); err != nil {
			t.Fatal(err)
		}
		if err = alice.DeleteAllSessions(ctx); err != nil {
			t.Fatal(err)
		}
		if got := sessionBytes(t, ctx, alice, bobAddr); got != nil {
			t.Error("session survived DeleteAllSessions")
		}
	})
}

// TestStoredSessionIsNotFresh: libsignal archives the current state on a new bundle
// only if the loaded record is not fresh; a record from the cache must say the same
// as one decoded from SQL.
func TestStoredSessionIsNotFresh(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		newPeer(alice, bob).startSession(t, bundleFor(t, bob))
		for _, s := range []store.Store{alice, reopen(t, c, alice)} {
			if rec, err := s.LoadSession(ctx, bobJID.SignalAddress()); err != nil || rec.IsFresh() {
				t.Errorf("stored session loads as fresh (%v)", err)
			}
		}
		// A second bundle must archive the first state, not replace it.
		newPeer(alice, bob).startSession(t, bundleFor(t, bob))
		rec, err := alice.LoadSession(ctx, bobJID.SignalAddress())
		if err != nil || len(rec.PreviousSessionStates()) != 1 {
			t.Errorf("after a second bundle: %v previous states, %v; want 1", len(rec.PreviousSessionStates()), err)
		}
	})
}

// TestLoadedSessionMutation: libsignal mutates the record it loaded even when it then
// fails and never stores it. That must not leak into the next load.
func TestLoadedSessionMutation(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		converse(t, alice, bob)
		addr := bobJID.SignalAddress()
		before := sessionBytes(t, ctx, alice, addr)
		rec, _ := alice.LoadSession(ctx, addr)
		rec.ArchiveCurrentState() // what a failed ProcessBundle or decrypt could leave behind
		if got := sessionBytes(t, ctx, alice, addr); !bytes.Equal(got, before) {
			t.Fatal("an unstored change to a loaded session leaked into the cache")
		}
	})
}

func TestIdentities(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice := newStore(t, c, aliceJID)
		addr := bobJID.SignalAddress()
		name, dev := bobJID.SignalName(), uint32(bobJID.Device)
		k1, k2 := newIdentity(t), newIdentity(t)
		steps := []struct {
			do           func(s store.Store) error
			want         *identity.Key // recorded key afterwards
			trustK1      bool
			trustK2      bool
			otherDevices int // rows of other devices of bob
		}{
			{do: func(store.Store) error { return nil }, trustK1: true, trustK2: true},
			{do: func(s store.Store) error { return s.SaveIdentity(ctx, addr, k1) }, want: k1, trustK1: true},
			{do: func(s store.Store) error { return s.SaveIdentity(ctx, addr, k1) }, want: k1, trustK1: true},
			{do: func(s store.Store) error {
				return s.SaveIdentity(ctx, protocol.NewSignalAddress(name, 9), k2)
			}, want: k1, trustK1: true, otherDevices: 1},
			{do: func(s store.Store) error { return s.SaveIdentity(ctx, addr, k2) }, want: k2, trustK2: true, otherDevices: 1},
			{do: func(s store.Store) error { return s.DeleteIdentitiesOf(ctx, name) }, trustK1: true, trustK2: true},
		}
		for i, step := range steps {
			if err := step.do(alice); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			for _, s := range []store.Store{alice, reopen(t, c, alice)} {
				got, err := s.GetIdentity(ctx, name, dev)
				if err != nil || (got == nil) != (step.want == nil) || (got != nil && !bytes.Equal(got.Serialize(), step.want.Serialize())) {
					t.Errorf("step %d: GetIdentity = %v, %v; want %v", i, got, err, step.want)
				}
				for key, want := range map[*identity.Key]bool{k1: step.trustK1, k2: step.trustK2} {
					if ok, err := s.IsTrustedIdentity(ctx, addr, key); err != nil || ok != want {
						t.Errorf("step %d: IsTrustedIdentity = %v, %v; want %v", i, ok, err, want)
					}
				}
			}
			if n := countRows(t, c, "interop_identity", aliceJID); n != boolInt(step.want != nil)+step.otherDevices {
				t.Errorf("step %d: %d identity rows", i, n)
			}
		}
	})
}

// TestSaveUnchangedIdentityDoesNotWrite: libsignal saves the identity on every
// message; an unchanged key must cost no write (a write would open a transaction).
func TestSaveUnchangedIdentityDoesNotWrite(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice := newStore(t, c, aliceJID)
		addr, key := bobJID.SignalAddress(), newIdentity(t)
		if err := alice.SaveIdentity(ctx, addr, key); err != nil {
			t.Fatal(err)
		}
		// Change the row behind the store's back: a write would restore it.
		other := newIdentity(t).PublicKey().PublicKey()
		if _, err := c.db.Exec(ctx, `UPDATE interop_identity SET identity=$1`, other[:]); err != nil {
			t.Fatal(err)
		}
		if err := alice.SaveIdentity(ctx, addr, key); err != nil {
			t.Fatal(err)
		}
		if got, _ := reopen(t, c, alice).GetIdentity(ctx, bobJID.SignalName(), uint32(bobJID.Device)); got == nil ||
			got.PublicKey().PublicKey() != other {
			t.Error("SaveIdentity of the unchanged key wrote the row")
		}
	})
}

func newIdentity(t *testing.T) *identity.Key {
	t.Helper()
	kp, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp.PublicKey()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
