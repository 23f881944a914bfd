package signal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

// TestExchange: Alice writes to both of Bob's devices (pkmsg), Bob's first device
// answers (msg), and the message types follow the session state.
func TestExchange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		ctx := context.Background()
		alice := newParty(t, newStore, aliceJID)
		bob0, bob1 := newParty(t, newStore, bob0JID), newParty(t, newStore, bob1JID)
		bob := []*party{bob0, bob1}

		devices := []jid.JID{bob0.jid, bob1.jid}
		parts, missing, err := alice.m.EncryptForDevices(ctx, devices, []byte("hi"))
		if err != nil || len(parts) != 0 || !slices.Equal(missing, devices) {
			t.Fatalf("EncryptForDevices without sessions = %v, %v, %v", parts, missing, err)
		}
		connect(t, alice, bob...)
		for _, d := range bob {
			if ok, err := alice.m.HasSession(ctx, d.jid); !ok || err != nil {
				t.Fatalf("HasSession(%s) = %v, %v", d.jid, ok, err)
			}
		}

		steps := []struct {
			from, to *party
			text     string
			wantType string
		}{
			{alice, bob0, "hello 0", TypePreKeyMessage},
			{alice, bob1, "hello 1", TypePreKeyMessage},
			// Until Bob answers, Alice keeps sending prekey messages.
			{alice, bob0, "still there?", TypePreKeyMessage},
			{bob0, alice, "yes", TypeMessage},
			{alice, bob0, "good", TypeMessage},
			{alice, bob1, "and you?", TypePreKeyMessage},
			{bob1, alice, "me too", TypeMessage},
			{bob0, alice, "bye", TypeMessage},
			{alice, bob1, "bye", TypeMessage},
		}
		for i, s := range steps {
			part := encrypt(t, s.from, s.to, s.text)
			if part.Type != s.wantType || part.Device != s.to.jid {
				t.Fatalf("step %d: part %s for %s, want %s for %s", i, part.Type, part.Device, s.wantType, s.to.jid)
			}
			if info := mustDecrypt(t, s.to, s.from, part, s.text); info.IdentityChanged {
				t.Fatalf("step %d: identity reported changed", i)
			}
		}

		parts, missing, err = alice.m.EncryptForDevices(ctx, devices, []byte("to all"))
		if err != nil || len(missing) != 0 || len(parts) != 2 {
			t.Fatalf("EncryptForDevices = %v, %v, %v", parts, missing, err)
		}
		for i, d := range bob {
			if parts[i].Device != d.jid {
				t.Fatalf("part %d for %s, want %s", i, parts[i].Device, d.jid)
			}
			mustDecrypt(t, d, alice, parts[i], "to all")
		}
		if n := alice.m.locks.size() + bob0.m.locks.size(); n != 0 {
			t.Fatalf("%d locks left in the lock maps", n)
		}
	})
}

// TestOutOfOrder delivers five messages as 5, 3, 1, 2, 4, both while they are still
// prekey messages and on an established session.
func TestOutOfOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		for _, tt := range []struct {
			name        string
			established bool
			wantType    string
		}{
			{"prekey messages", false, TypePreKeyMessage},
			{"established session", true, TypeMessage},
		} {
			t.Run(tt.name, func(t *testing.T) {
				alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
				connect(t, alice, bob)
				if tt.established {
					mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "first"), "first")
					mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "ack"), "ack")
				}
				var parts []EncryptedPart
				for i := 1; i <= 5; i++ {
					parts = append(parts, encrypt(t, alice, bob, fmt.Sprint("message ", i)))
				}
				for _, i := range []int{5, 3, 1, 2, 4} {
					if parts[i-1].Type != tt.wantType {
						t.Fatalf("message %d is %s, want %s", i, parts[i-1].Type, tt.wantType)
					}
					mustDecrypt(t, bob, alice, parts[i-1], fmt.Sprint("message ", i))
				}
				mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "all read"), "all read")
			})
		}
	})
}

// TestDuplicate: a second copy of a message fails with ErrDuplicate and leaves the
// session working.
func TestDuplicate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
		connect(t, alice, bob)
		first := encrypt(t, alice, bob, "one")
		mustDecrypt(t, bob, alice, first, "one")
		_, _, err := decrypt(bob, alice, first)
		wantErr(t, err, ErrDuplicate)

		mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "reply"), "reply")
		msg := encrypt(t, alice, bob, "two")
		mustDecrypt(t, bob, alice, msg, "two")
		_, _, err = decrypt(bob, alice, msg)
		wantErr(t, err, ErrDuplicate)
		if IsDecryptError(err) {
			t.Fatal("a duplicate would trigger a retry receipt")
		}
		mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "three"), "three")
		mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "four"), "four")
	})
}

// TestIdentityChange: Bob reinstalls (new identity, same address).
func TestIdentityChange(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		ctx := context.Background()
		for _, tt := range []struct {
			name string
			// restart re-establishes the conversation after the reinstall and returns
			// what Alice saw.
			restart func(t *testing.T, alice, bob *party) bool
		}{
			{"new bob writes first", func(t *testing.T, alice, bob *party) bool {
				connect(t, bob, alice)
				part := encrypt(t, bob, alice, "I reinstalled")
				if part.Type != TypePreKeyMessage {
					t.Fatalf("first message after reinstall is %s", part.Type)
				}
				return mustDecrypt(t, alice, bob, part, "I reinstalled").IdentityChanged
			}},
			{"alice fetches the new bundle", func(t *testing.T, alice, bob *party) bool {
				b, err := bob.m.OwnBundle(ctx)
				if err != nil {
					t.Fatal(err)
				}
				changed, err := alice.m.ProcessBundle(ctx, bob.jid, b)
				if err != nil {
					t.Fatal(err)
				}
				mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "welcome back"), "welcome back")
				return changed
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
				connect(t, alice, bob)
				mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "hi"), "hi")
				mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "hi back"), "hi back")

				bob = newParty(t, newStore, bob0JID)
				_, _, err := decrypt(bob, alice, encrypt(t, alice, bob, "lost"))
				wantErr(t, err, ErrNoSession)

				if !tt.restart(t, alice, bob) {
					t.Fatal("identity change not reported")
				}
				mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "talk again"), "talk again")
				mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "yes"), "yes")
				known, err := alice.m.Store().GetIdentity(ctx, bob.jid.SignalName(), 0)
				if err != nil || known == nil || known.PublicKey().PublicKey() != bob.m.identityPublic() {
					t.Fatalf("recorded identity is not the new one: %v", err)
				}
			})
		}
	})
}

// TestHandleIdentityChange: the <identity/> notification drops every session and
// identity of the user; new bundles are then accepted without a change report.
func TestHandleIdentityChange(t *testing.T) {
	ctx := context.Background()
	newStore := memBackend.open(t)
	alice := newParty(t, newStore, aliceJID)
	bob0, bob1 := newParty(t, newStore, bob0JID), newParty(t, newStore, bob1JID)
	carol := newParty(t, newStore, carolJID)
	connect(t, alice, bob0, bob1, carol)
	if err := alice.m.HandleIdentityChange(ctx, bob0JID.ToUser()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*party{bob0, bob1} {
		if ok, _ := alice.m.HasSession(ctx, d.jid); ok {
			t.Fatalf("session with %s survived", d.jid)
		}
		if k, _ := alice.m.Store().GetIdentity(ctx, d.jid.SignalName(), uint32(d.jid.Device)); k != nil {
			t.Fatalf("identity of %s survived", d.jid)
		}
	}
	if ok, _ := alice.m.HasSession(ctx, carol.jid); !ok {
		t.Fatal("another user's session was dropped")
	}
	newBob := newParty(t, newStore, bob0JID)
	b, _ := newBob.m.OwnBundle(ctx)
	if changed, err := alice.m.ProcessBundle(ctx, newBob.jid, b); err != nil || changed {
		t.Fatalf("ProcessBundle after the notification = %v, %v", changed, err)
	}
	mustDecrypt(t, newBob, alice, encrypt(t, alice, newBob, "hello"), "hello")
}

// TestRetry: Bob loses his session. The first retry (no keys) is answered on the old
// session and fails again; the second carries Bob's keys, and Alice re-encrypts her
// kept copy on a new session.
func TestRetry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		ctx := context.Background()
		alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
		connect(t, alice, bob)
		mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "hi"), "hi")
		mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "hi back"), "hi back")

		if err := bob.m.DeleteSession(ctx, alice.jid); err != nil {
			t.Fatal(err)
		}
		const text, id = "the important message", "3EB0A1"
		err := alice.m.Store().PutSentMessage(ctx, &store.SentMessage{Chat: bob.jid.ToUser(), ID: id, Plaintext: []byte(text)})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = decrypt(bob, alice, encrypt(t, alice, bob, text))
		if !errors.Is(err, ErrNoSession) || !IsDecryptError(err) {
			t.Fatalf("decrypt without session = %v", err)
		}

		req := RetryRequest{Device: bob.jid, Chat: bob.jid.ToUser(), MessageID: id}
		for count := 1; count <= 2; count++ {
			rr, err := bob.m.BuildRetryReceipt(ctx, count)
			if err != nil {
				t.Fatal(err)
			}
			if rr.RegistrationID != bob.m.Store().Account().RegistrationID || (rr.Keys != nil) != (count >= 2) {
				t.Fatalf("retry receipt %d = %+v", count, rr)
			}
			req.Count, req.RegistrationID, req.Keys = count, rr.RegistrationID, rr.Keys
			part, err := alice.m.ResendForRetry(ctx, req)
			if err != nil {
				t.Fatalf("ResendForRetry(%d): %v", count, err)
			}
			got, _, err := decrypt(bob, alice, part)
			if count == 1 {
				if part.Type != TypeMessage || !errors.Is(err, ErrNoSession) {
					t.Fatalf("retry 1: %s, %v; want a msg that still fails", part.Type, err)
				}
				continue
			}
			if part.Type != TypePreKeyMessage || err != nil || got != text {
				t.Fatalf("retry 2: %s, %q, %v", part.Type, got, err)
			}
		}
		mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "got it"), "got it")

		req.Count, req.Keys = 3, nil
		if _, err := alice.m.ResendForRetry(ctx, req); !errors.Is(err, ErrRetryNeedsKeys) {
			t.Fatalf("retry 3 without keys = %v", err)
		}
		req.Count = MaxRetries + 1
		if _, err := alice.m.ResendForRetry(ctx, req); !errors.Is(err, ErrTooManyRetries) {
			t.Fatalf("retry %d = %v", req.Count, err)
		}
		req.Count, req.MessageID = 1, "unknown"
		if _, err := alice.m.ResendForRetry(ctx, req); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("retry of an unknown message = %v", err)
		}
	})
}

// TestRetryAfterReinstall: a count-1 retry whose registration id differs from the
// session's means the device was reinstalled; it needs keys.
func TestRetryAfterReinstall(t *testing.T) {
	ctx := context.Background()
	newStore := memBackend.open(t)
	alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
	connect(t, alice, bob)
	_ = alice.m.Store().PutSentMessage(ctx, &store.SentMessage{Chat: bob.jid, ID: "X", Plaintext: []byte("x")})
	oldReg := bob.m.Store().Account().RegistrationID
	bob = newParty(t, newStore, bob0JID)
	for bob.m.Store().Account().RegistrationID == oldReg {
		bob = newParty(t, newStore, bob0JID)
	}
	rr, _ := bob.m.BuildRetryReceipt(ctx, 1)
	req := RetryRequest{Device: bob.jid, Chat: bob.jid, MessageID: "X", Count: 1, RegistrationID: rr.RegistrationID}
	if _, err := alice.m.ResendForRetry(ctx, req); !errors.Is(err, ErrRetryNeedsKeys) {
		t.Fatalf("retry from a reinstalled device = %v", err)
	}
	req.Keys, _ = bob.m.OwnBundle(ctx)
	part, err := alice.m.ResendForRetry(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	mustDecrypt(t, bob, alice, part, "x")
}

var errHandle = errors.New("matrix is down")

// TestHandleErrorRollsBack: when handling fails, the ratchet (and for a pkmsg the new
// session and the consumed prekey) roll back, so the same ciphertext decrypts later.
func TestHandleErrorRollsBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, newStore newStoreFunc) {
		ctx := context.Background()
		alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
		connect(t, alice, bob)
		fail := func(context.Context, []byte) error { return errHandle }

		for i, text := range []string{"pkmsg", "msg"} {
			if i == 1 {
				mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "reply"), "reply")
			}
			part := encrypt(t, alice, bob, text)
			if part.Type != []string{TypePreKeyMessage, TypeMessage}[i] {
				t.Fatalf("%s is a %s", text, part.Type)
			}
			for range 2 {
				_, err := bob.m.Decrypt(ctx, alice.jid, part.Type, part.Ciphertext, fail)
				var he *HandleError
				if !errors.As(err, &he) || !errors.Is(err, errHandle) || IsDecryptError(err) {
					t.Fatalf("Decrypt with failing handle = %v", err)
				}
			}
			mustDecrypt(t, bob, alice, part, text)
		}
	})
}

func TestEncryptWithoutSession(t *testing.T) {
	newStore := memBackend.open(t)
	alice := newParty(t, newStore, aliceJID)
	_, err := alice.m.Encrypt(context.Background(), bob0JID, []byte("x"))
	wantErr(t, err, ErrNoSession)
}

func TestProcessBundleRefuses(t *testing.T) {
	ctx := context.Background()
	newStore := memBackend.open(t)
	alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
	good, err := bob.m.OwnBundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		modify func(b *PreKeyBundle)
	}{
		{"bad signature", func(b *PreKeyBundle) { b.SignedPreKey.Signature[5] ^= 1 }},
		{"other signed prekey", func(b *PreKeyBundle) { b.SignedPreKey.Public[0] ^= 1 }},
		{"other identity", func(b *PreKeyBundle) { b.IdentityKey[31] ^= 1 }},
		{"zero bundle", func(b *PreKeyBundle) { *b = PreKeyBundle{} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := *good
			tt.modify(&b)
			_, err := alice.m.ProcessBundle(ctx, bob.jid, &b)
			wantErr(t, err, ErrInvalidBundle)
			if ok, _ := alice.m.HasSession(ctx, bob.jid); ok {
				t.Fatal("a refused bundle made a session")
			}
		})
	}
	// Without a one-time prekey the session still works.
	noPreKey := *good
	noPreKey.PreKey = nil
	if _, err := alice.m.ProcessBundle(ctx, bob.jid, &noPreKey); err != nil {
		t.Fatal(err)
	}
	mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "no otpk"), "no otpk")
}

// TestConcurrentEncrypt: parallel senders to one device never reuse a message key.
func TestConcurrentEncrypt(t *testing.T) {
	for _, b := range []backend{memBackend, sqlBackendNamed(t, "sqlite")} {
		t.Run(b.name, func(t *testing.T) {
			newStore := b.open(t)
			alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
			connect(t, alice, bob)
			mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "hi"), "hi")
			mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "hi"), "hi")
			const n = 16
			parts := make([]EncryptedPart, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					part, err := alice.m.Encrypt(context.Background(), bob.jid, []byte(fmt.Sprint(i)))
					if err != nil {
						t.Error(err)
					}
					parts[i] = part
				}()
			}
			wg.Wait()
			for i, p := range parts {
				mustDecrypt(t, bob, alice, p, fmt.Sprint(i))
			}
		})
	}
}

func sqlBackendNamed(t *testing.T, name string) backend {
	for _, b := range allBackends() {
		if b.name == name {
			return b
		}
	}
	t.Fatalf("no backend %s", name)
	return backend{}
}
