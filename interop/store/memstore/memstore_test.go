package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/util/keyhelper"
	"go.mau.fi/libsignal/util/optional"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	acc, err := NewAccount(jid.Interop(7, "33612345678"))
	if err != nil {
		t.Fatal(err)
	}
	return New(acc).(*Store)
}

func newIdentity(t testing.TB) *identity.Key {
	t.Helper()
	kp, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return identity.NewKey(kp.PublicKey())
}

var bob = protocol.NewSignalAddress("491701234567@s.whatsapp.net", 0)

func TestNewAccount(t *testing.T) {
	for range 50 {
		acc, err := NewAccount(jid.Interop(7, "1"))
		if err != nil {
			t.Fatal(err)
		}
		if acc.RegistrationID < 1 || acc.RegistrationID > 16380 {
			t.Fatalf("registration id %d outside 1..16380", acc.RegistrationID)
		}
		if acc.IdentityKey == nil || acc.CreatedAt.IsZero() {
			t.Fatal("account without identity key or creation time")
		}
	}
}

var errRollback = errors.New("roll back")

func TestDoTxn(t *testing.T) {
	ctx := context.Background()
	key := newIdentity(t)
	tests := []struct {
		name      string
		fn        func(s *Store) func(ctx context.Context) error
		wantErr   error
		wantSaved bool
	}{
		{"commit", func(s *Store) func(context.Context) error {
			return func(ctx context.Context) error { return s.SaveIdentity(ctx, bob, key) }
		}, nil, true},
		{"error rolls back", func(s *Store) func(context.Context) error {
			return func(ctx context.Context) error {
				if err := s.SaveIdentity(ctx, bob, key); err != nil {
					return err
				}
				return errRollback
			}
		}, errRollback, false},
		{"nested joins outer commit", func(s *Store) func(context.Context) error {
			return func(ctx context.Context) error {
				return s.DoTxn(ctx, func(ctx context.Context) error { return s.SaveIdentity(ctx, bob, key) })
			}
		}, nil, true},
		{"outer error undoes nested writes", func(s *Store) func(context.Context) error {
			return func(ctx context.Context) error {
				if err := s.DoTxn(ctx, func(ctx context.Context) error { return s.SaveIdentity(ctx, bob, key) }); err != nil {
					return err
				}
				return errRollback
			}
		}, errRollback, false},
		{"nested error rolls back all", func(s *Store) func(context.Context) error {
			return func(ctx context.Context) error {
				return s.DoTxn(ctx, func(ctx context.Context) error {
					_ = s.SaveIdentity(ctx, bob, key)
					return errRollback
				})
			}
		}, errRollback, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if err := s.DoTxn(ctx, tt.fn(s)); !errors.Is(err, tt.wantErr) {
				t.Fatalf("DoTxn = %v, want %v", err, tt.wantErr)
			}
			got, err := s.GetIdentity(ctx, bob.Name(), bob.DeviceID())
			if err != nil {
				t.Fatal(err)
			}
			if (got != nil) != tt.wantSaved {
				t.Fatalf("identity saved = %v, want %v", got != nil, tt.wantSaved)
			}
		})
	}
}

func TestDoTxnPanicRollsBack(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic was swallowed")
			}
		}()
		_ = s.DoTxn(ctx, func(ctx context.Context) error {
			_ = s.SaveIdentity(ctx, bob, newIdentity(t))
			panic("boom")
		})
	}()
	if got, _ := s.GetIdentity(ctx, bob.Name(), 0); got != nil {
		t.Fatal("write of a panicking transaction was committed")
	}
}

func TestTxnIsolation(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	key := newIdentity(t)
	err := s.DoTxn(ctx, func(txCtx context.Context) error {
		if err := s.SaveIdentity(txCtx, bob, key); err != nil {
			return err
		}
		if got, _ := s.GetIdentity(txCtx, bob.Name(), 0); got == nil {
			t.Error("transaction does not see its own write")
		}
		if got, _ := s.GetIdentity(ctx, bob.Name(), 0); got != nil {
			t.Error("uncommitted write visible outside the transaction")
		}
		if err := s.DeleteIdentitiesOf(txCtx, bob.Name()); err != nil {
			return err
		}
		if got, _ := s.GetIdentity(txCtx, bob.Name(), 0); got != nil {
			t.Error("transaction sees a row it deleted")
		}
		return s.SaveIdentity(txCtx, bob, key)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetIdentity(ctx, bob.Name(), 0); got == nil || !bytes.Equal(got.Serialize(), key.Serialize()) {
		t.Fatal("committed identity missing")
	}
}

func TestWriteAfterTxnEnds(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	var leaked context.Context
	if err := s.DoTxn(ctx, func(ctx context.Context) error { leaked = ctx; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveIdentity(leaked, bob, newIdentity(t)); !errors.Is(err, ErrTxnDone) {
		t.Fatalf("write through a finished transaction = %v, want ErrTxnDone", err)
	}
	// A new DoTxn on the stale ctx starts a fresh transaction instead of joining.
	if err := s.DoTxn(leaked, func(ctx context.Context) error { return s.SaveIdentity(ctx, bob, newIdentity(t)) }); err != nil {
		t.Fatalf("DoTxn on a finished transaction's ctx: %v", err)
	}
}

func TestTrustOnFirstUse(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	first, second := newIdentity(t), newIdentity(t)
	for _, step := range []struct {
		save    *identity.Key
		check   *identity.Key
		trusted bool
	}{
		{nil, first, true},
		{first, first, true},
		{nil, second, false},
		{second, second, true},
		{nil, first, false},
	} {
		if step.save != nil {
			if err := s.SaveIdentity(ctx, bob, step.save); err != nil {
				t.Fatal(err)
			}
		}
		ok, err := s.IsTrustedIdentity(ctx, bob, step.check)
		if err != nil || ok != step.trusted {
			t.Fatalf("IsTrustedIdentity = %v, %v; want %v", ok, err, step.trusted)
		}
	}
	// Another device of the same user is unknown, so trusted.
	if ok, _ := s.IsTrustedIdentity(ctx, protocol.NewSignalAddress(bob.Name(), 3), first); !ok {
		t.Fatal("unknown device not trusted")
	}
	if err := s.DeleteIdentitiesOf(ctx, bob.Name()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.IsTrustedIdentity(ctx, bob, first); !ok {
		t.Fatal("forgotten identity still enforced")
	}
}

func TestSessionsAreCopies(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	fresh, err := s.LoadSession(ctx, bob)
	if err != nil || fresh == nil || !fresh.IsFresh() {
		t.Fatalf("LoadSession of unknown device = %v, %v; want a fresh record", fresh, err)
	}
	buildSession(t, s, bob)
	rec, err := s.LoadSession(ctx, bob)
	if err != nil || rec.IsFresh() {
		t.Fatalf("LoadSession after building one = %v, %v", rec, err)
	}
	rec.SessionState().SetRemoteRegistrationID(1)
	if err := s.StoreSession(ctx, bob, rec); err != nil {
		t.Fatal(err)
	}
	// libsignal mutates loaded records in place; that must not reach the store.
	loaded, _ := s.LoadSession(ctx, bob)
	loaded.SessionState().SetRemoteRegistrationID(2)
	rec.SessionState().SetRemoteRegistrationID(3)
	if again, _ := s.LoadSession(ctx, bob); again.SessionState().RemoteRegistrationID() != 1 {
		t.Fatalf("stored session changed without StoreSession: %d", again.SessionState().RemoteRegistrationID())
	}
	// A rolled back StoreSession leaves the committed record.
	_ = s.DoTxn(ctx, func(ctx context.Context) error {
		loaded.SessionState().SetRemoteRegistrationID(4)
		if err := s.StoreSession(ctx, bob, loaded); err != nil {
			return err
		}
		return errRollback
	})
	if again, _ := s.LoadSession(ctx, bob); again.SessionState().RemoteRegistrationID() != 1 {
		t.Fatalf("rolled back session was kept: %d", again.SessionState().RemoteRegistrationID())
	}

	other := protocol.NewSignalAddress(bob.Name(), 3)
	_ = s.StoreSession(ctx, other, rec)
	_ = s.StoreSession(ctx, protocol.NewSignalAddress("1@msgr", 0), rec)
	if devs, _ := s.GetSubDeviceSessions(ctx, bob.Name()); fmt.Sprint(devs) != "[0 3]" {
		t.Fatalf("GetSubDeviceSessions = %v", devs)
	}
	if err := s.DeleteSessionsOf(ctx, bob.Name()); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*protocol.SignalAddress{bob, other} {
		if ok, _ := s.ContainsSession(ctx, a); ok {
			t.Fatalf("session with %s survived DeleteSessionsOf", a)
		}
	}
	if ok, _ := s.ContainsSession(ctx, protocol.NewSignalAddress("1@msgr", 0)); !ok {
		t.Fatal("DeleteSessionsOf removed another user's session")
	}
	_ = s.DeleteAllSessions(ctx)
	if ok, _ := s.ContainsSession(ctx, protocol.NewSignalAddress("1@msgr", 0)); ok {
		t.Fatal("DeleteAllSessions left a session")
	}
}

// buildSession makes a real session with a new remote party through libsignal's
// session builder, which stores it at addr.
func buildSession(t *testing.T, s *Store, addr *protocol.SignalAddress) {
	t.Helper()
	remote := newStore(t)
	spk, err := keyhelper.GenerateSignedPreKey(remote.acc.IdentityKey, 1, serializer.SignedPreKeyRecord)
	if err != nil {
		t.Fatal(err)
	}
	bundle := prekey.NewBundle(remote.acc.RegistrationID, addr.DeviceID(), optional.NewEmptyUint32(), spk.ID(),
		nil, spk.KeyPair().PublicKey(), spk.Signature(), remote.acc.IdentityKey.PublicKey())
	if err := session.NewBuilderFromSignal(s, addr, serializer).ProcessBundle(context.Background(), bundle); err != nil {
		t.Fatal(err)
	}
}

func TestPreKeys(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	first, err := s.GeneratePreKeys(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := s.GeneratePreKeys(ctx, 2)
	var ids []uint32
	for _, k := range append(first, second...) {
		ids = append(ids, k.ID().Value)
	}
	if fmt.Sprint(ids) != "[1 2 3 4 5]" {
		t.Fatalf("prekey ids = %v", ids)
	}
	if up, _ := s.UnuploadedPreKeys(ctx); len(up) != 5 {
		t.Fatalf("%d unuploaded, want 5", len(up))
	}
	if err := s.MarkPreKeysUploaded(ctx, []uint32{1, 2, 3, 99}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.UploadedPreKeyCount(ctx); n != 3 {
		t.Fatalf("uploaded count %d, want 3", n)
	}
	if err := s.RemovePreKey(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.UploadedPreKeyCount(ctx); n != 2 {
		t.Fatalf("uploaded count after consumption %d, want 2", n)
	}
	if k, err := s.LoadPreKey(ctx, 2); k != nil || err != nil {
		t.Fatalf("LoadPreKey of consumed key = %v, %v; want nil, nil", k, err)
	}
	loaded, err := s.LoadPreKey(ctx, 1)
	if err != nil || loaded.KeyPair().PublicKey().PublicKey() != first[0].KeyPair().PublicKey().PublicKey() {
		t.Fatalf("LoadPreKey(1) = %v, %v", loaded, err)
	}

	// Ids wrap within 1..0xFFFFFF.
	s.lastPreKeyID.rows[struct{}{}] = maxPreKeyID - 1
	wrapped, _ := s.GeneratePreKeys(ctx, 3)
	ids = ids[:0]
	for _, k := range wrapped {
		ids = append(ids, k.ID().Value)
	}
	if fmt.Sprint(ids) != fmt.Sprint([]uint32{maxPreKeyID, 1, 2}) {
		t.Fatalf("wrapped ids = %v", ids)
	}

	// Generation inside a rolled back transaction leaves nothing behind.
	s2 := newStore(t)
	_ = s2.DoTxn(ctx, func(ctx context.Context) error {
		if _, err := s2.GeneratePreKeys(ctx, 4); err != nil {
			return err
		}
		return errRollback
	})
	if again, _ := s2.GeneratePreKeys(ctx, 1); again[0].ID().Value != 1 {
		t.Fatalf("id after rolled back generation = %d, want 1", again[0].ID().Value)
	}
}

func TestSignedPreKeys(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if _, err := s.LatestSignedPreKey(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestSignedPreKey on empty store = %v", err)
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, age := range []int{40, 20, 1} {
		rec, err := keyhelper.GenerateSignedPreKey(s.acc.IdentityKey, uint32(i+1), serializer.SignedPreKeyRecord)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.StoreSignedPreKeyAt(ctx, rec, base.AddDate(0, 0, -age)); err != nil {
			t.Fatal(err)
		}
	}
	latest, err := s.LatestSignedPreKey(ctx)
	if err != nil || latest.Record.ID() != 3 || !latest.CreatedAt.Equal(base.AddDate(0, 0, -1)) {
		t.Fatalf("LatestSignedPreKey = %+v, %v", latest, err)
	}
	if err := s.PruneSignedPreKeys(ctx, base.AddDate(0, 0, -30)); err != nil {
		t.Fatal(err)
	}
	all, _ := s.LoadSignedPreKeys(ctx)
	if len(all) != 2 || all[0].ID() != 2 || all[1].ID() != 3 {
		t.Fatalf("after pruning %d keys remain", len(all))
	}
	// The newest survives even when older than the cutoff.
	if err := s.PruneSignedPreKeys(ctx, base.AddDate(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.ContainsSignedPreKey(ctx, 3); !ok {
		t.Fatal("pruning removed the newest signed prekey")
	}
	if ok, _ := s.ContainsSignedPreKey(ctx, 2); ok {
		t.Fatal("pruning kept an old signed prekey")
	}
	if k, err := s.LoadSignedPreKey(ctx, 2); k != nil || err != nil {
		t.Fatalf("LoadSignedPreKey of removed key = %v, %v", k, err)
	}
}

func TestSenderKeys(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	group := jid.MustParse("491701234567-1700000000@g.us")
	other := jid.MustParse("120363@g.us")
	devs := []jid.JID{jid.MustParse("491701234567@s.whatsapp.net"), jid.MustParse("491701234567:3@s.whatsapp.net")}
	if err := s.AddSenderKeyHolders(ctx, group, devs); err != nil {
		t.Fatal(err)
	}
	_ = s.AddSenderKeyHolders(ctx, other, devs[:1])
	if h, _ := s.SenderKeyHolders(ctx, group); len(h) != 2 {
		t.Fatalf("holders = %v", h)
	}

	own := protocol.NewSenderKeyName(group.String(), s.acc.JID.SignalAddress())
	theirs := protocol.NewSenderKeyName(group.String(), bob)
	empty, err := s.LoadSenderKey(ctx, own)
	if err != nil || empty == nil || !empty.IsEmpty() {
		t.Fatalf("LoadSenderKey of unknown key = %v, %v; want an empty record", empty, err)
	}
	empty.SetSenderKeyState(1, 0, keyhelper.GenerateSenderKey(), mustKeyPair(t))
	for _, n := range []*protocol.SenderKeyName{own, theirs} {
		if err := s.StoreSenderKey(ctx, n, empty); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ResetSenderKey(ctx, group); err != nil {
		t.Fatal(err)
	}
	if rec, _ := s.LoadSenderKey(ctx, own); !rec.IsEmpty() {
		t.Fatal("ResetSenderKey kept our sender key")
	}
	if rec, _ := s.LoadSenderKey(ctx, theirs); rec.IsEmpty() {
		t.Fatal("ResetSenderKey dropped another member's sender key")
	}
	if h, _ := s.SenderKeyHolders(ctx, group); len(h) != 0 {
		t.Fatalf("holders after reset = %v", h)
	}
	if h, _ := s.SenderKeyHolders(ctx, other); len(h) != 1 {
		t.Fatal("reset of one group touched another")
	}
}

func mustKeyPair(t testing.TB) *ecc.ECKeyPair {
	kp, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestSentMessages(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	chat := jid.MustParse("491701234567@s.whatsapp.net")
	now := time.Now()
	msg := &store.SentMessage{Chat: chat, ID: "A1", Plaintext: []byte("hello"), SentAt: now.Add(-48 * time.Hour)}
	if err := s.PutSentMessage(ctx, msg); err != nil {
		t.Fatal(err)
	}
	_ = s.PutSentMessage(ctx, &store.SentMessage{Chat: chat, ID: "A2", Plaintext: []byte("x"), SentAt: now})
	msg.Plaintext[0] = 'j'
	got, err := s.GetSentMessage(ctx, chat, "A1")
	if err != nil || string(got.Plaintext) != "hello" {
		t.Fatalf("GetSentMessage = %+v, %v", got, err)
	}
	got.Plaintext[0] = 'j'
	if again, _ := s.GetSentMessage(ctx, chat, "A1"); string(again.Plaintext) != "hello" {
		t.Fatal("a returned copy aliases the store")
	}
	if _, err := s.GetSentMessage(ctx, chat, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown message: %v", err)
	}
	if err := s.PruneSentMessages(ctx, now.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSentMessage(ctx, chat, "A1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("old message survived pruning")
	}
	if _, err := s.GetSentMessage(ctx, chat, "A2"); err != nil {
		t.Fatal("recent message pruned")
	}
}

// TestConcurrentTxns runs writers in parallel (meaningful under -race) and checks
// that committed transactions all land and rolled back ones never do.
func TestConcurrentTxns(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	key := newIdentity(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := protocol.NewSignalAddress(fmt.Sprintf("%d@msgr", i), 0)
			_ = s.DoTxn(ctx, func(ctx context.Context) error {
				if err := s.SaveIdentity(ctx, a, key); err != nil {
					return err
				}
				if _, err := s.IsTrustedIdentity(ctx, a, key); err != nil {
					return err
				}
				if i%2 == 1 {
					return errRollback
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i := range 20 {
		got, _ := s.GetIdentity(ctx, fmt.Sprintf("%d@msgr", i), 0)
		if (got != nil) != (i%2 == 0) {
			t.Errorf("writer %d: committed = %v", i, got != nil)
		}
	}
}
