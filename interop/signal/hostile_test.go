package signal

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// pkmsgWith builds a version-3 prekey message with hand-picked fields (field numbers
// of libsignal's PreKeySignalMessage), to reach what the serializer never produces.
func pkmsgWith(baseKey, identityKey, message []byte) []byte {
	b := []byte{0x33}
	b = protowire.AppendTag(b, 5, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 6, protowire.VarintType)
	b = protowire.AppendVarint(b, 1)
	if baseKey != nil {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, baseKey)
	}
	if identityKey != nil {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, identityKey)
	}
	if message != nil {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, message)
	}
	return b
}

// TestHostileCiphertexts: malformed input of every kind gives an error, never a
// panic, and leaves the sessions working.
func TestHostileCiphertexts(t *testing.T) {
	ctx := context.Background()
	newStore := memBackend.open(t)
	alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
	connect(t, alice, bob)
	pk := encrypt(t, alice, bob, "valid pkmsg")
	mustDecrypt(t, bob, alice, pk, "valid pkmsg")
	mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "reply"), "reply")
	msg := encrypt(t, alice, bob, "valid msg")
	skmsg, skdm, err := alice.m.GroupEncrypt(ctx, groupJID, []byte("group"))
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.m.ProcessSenderKeyDistribution(ctx, groupJID, alice.jid, skdm); err != nil {
		t.Fatal(err)
	}

	key := make([]byte, 33)
	key[0] = 5
	garbage := make([]byte, 200)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	inputs := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"one byte", []byte{0x33}},
		{"version only and mac", append([]byte{0x33}, make([]byte, 8)...)},
		{"garbage", garbage},
		{"truncated pkmsg", pk.Ciphertext[:len(pk.Ciphertext)/2]},
		{"truncated msg", msg.Ciphertext[:len(msg.Ciphertext)-9]},
		{"truncated skmsg", skmsg[:len(skmsg)-64]},
		{"pkmsg empty keys", pkmsgWith([]byte{}, []byte{}, []byte{})},
		{"pkmsg short keys", pkmsgWith([]byte{5}, []byte{5}, msg.Ciphertext)},
		{"pkmsg bad key type", pkmsgWith(append([]byte{7}, key[1:]...), key, msg.Ciphertext)},
		{"pkmsg empty inner", pkmsgWith(key, key, []byte{})},
		{"pkmsg garbage inner", pkmsgWith(key, key, garbage)},
		{"old version", append([]byte{0x22}, pk.Ciphertext[1:]...)},
		{"future version", append([]byte{0x44}, pk.Ciphertext[1:]...)},
	}
	for _, typ := range []string{TypePreKeyMessage, TypeMessage, TypeSenderKey, "frob"} {
		cases := append([]struct {
			name string
			b    []byte
		}{}, inputs...)
		// Valid ciphertexts of another type.
		for _, other := range []struct {
			typ string
			b   []byte
		}{{TypePreKeyMessage, pk.Ciphertext}, {TypeMessage, msg.Ciphertext}, {TypeSenderKey, skmsg}} {
			if other.typ != typ {
				cases = append(cases, struct {
					name string
					b    []byte
				}{other.typ + " bytes", other.b})
			}
		}
		for _, c := range cases {
			t.Run(typ+"/"+c.name, func(t *testing.T) {
				err := deliver(ctx, bob, alice, typ, c.b)
				if err == nil {
					t.Fatal("hostile input decrypted")
				}
				if errors.Is(err, ErrLibraryPanic) {
					t.Logf("recovered: %v", err)
				}
				if typ == "frob" && !errors.Is(err, ErrUnknownType) {
					t.Fatalf("unknown type: %v", err)
				}
			})
		}
	}

	// Bit flips anywhere in valid messages.
	for _, c := range []struct {
		typ string
		b   []byte
	}{{TypePreKeyMessage, pk.Ciphertext}, {TypeMessage, msg.Ciphertext}, {TypeSenderKey, skmsg}} {
		for i := range len(c.b) * 8 {
			flipped := append([]byte(nil), c.b...)
			flipped[i/8] ^= 1 << (i % 8)
			if err := deliver(ctx, bob, alice, c.typ, flipped); err == nil {
				t.Fatalf("%s with bit %d flipped decrypted", c.typ, i)
			}
		}
	}
	for _, p := range []*party{alice, bob} {
		if n := p.m.locks.size(); n != 0 {
			t.Fatalf("%d locks left after failures", n)
		}
	}

	// Nothing above broke the sessions.
	mustDecrypt(t, bob, alice, msg, "valid msg")
	mustDecrypt(t, bob, alice, encrypt(t, alice, bob, "after"), "after")
	mustDecrypt(t, alice, bob, encrypt(t, bob, alice, "after"), "after")
	if err := deliver(ctx, bob, alice, TypeSenderKey, skmsg); err != nil {
		t.Fatalf("valid skmsg after the hostile ones: %v", err)
	}
}

func deliver(ctx context.Context, to, from *party, typ string, b []byte) error {
	ok := func(context.Context, []byte) error { return nil }
	if typ == TypeSenderKey {
		return to.m.GroupDecrypt(ctx, groupJID, from.jid, b, ok)
	}
	_, err := to.m.Decrypt(ctx, from.jid, typ, b, ok)
	return err
}

func TestHostileDistribution(t *testing.T) {
	ctx := context.Background()
	newStore := memBackend.open(t)
	alice, bob := newParty(t, newStore, aliceJID), newParty(t, newStore, bob0JID)
	_, skdm, err := alice.m.GroupEncrypt(ctx, groupJID, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range [][]byte{nil, {}, {0x33}, skdm[:len(skdm)/2], append([]byte{0x33}, make([]byte, 50)...)} {
		if err := bob.m.ProcessSenderKeyDistribution(ctx, groupJID, alice.jid, in); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ProcessSenderKeyDistribution(%x) = %v", in, err)
		}
	}
	for i := range len(skdm) * 8 {
		flipped := append([]byte(nil), skdm...)
		flipped[i/8] ^= 1 << (i % 8)
		_ = bob.m.ProcessSenderKeyDistribution(ctx, groupJID, alice.jid, flipped)
	}
}

// FuzzDecrypt feeds arbitrary bytes to every decrypt path of an established session.
func FuzzDecrypt(f *testing.F) {
	ctx := context.Background()
	newStore := memBackend.open(f)
	alice, bob := newParty(f, newStore, aliceJID), newParty(f, newStore, bob0JID)
	connect(f, alice, bob)
	pk := encrypt(f, alice, bob, "seed")
	mustDecrypt(f, bob, alice, pk, "seed")
	mustDecrypt(f, alice, bob, encrypt(f, bob, alice, "seed"), "seed")
	skmsg, skdm, _ := alice.m.GroupEncrypt(ctx, groupJID, []byte("seed"))
	_ = bob.m.ProcessSenderKeyDistribution(ctx, groupJID, alice.jid, skdm)
	f.Add(uint8(0), pk.Ciphertext)
	f.Add(uint8(1), encrypt(f, alice, bob, "seed").Ciphertext)
	f.Add(uint8(2), skmsg)
	f.Add(uint8(3), skdm)
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		var err error
		switch kind % 4 {
		case 0:
			err = deliver(ctx, bob, alice, TypePreKeyMessage, b)
		case 1:
			err = deliver(ctx, bob, alice, TypeMessage, b)
		case 2:
			err = deliver(ctx, bob, alice, TypeSenderKey, b)
		case 3:
			err = bob.m.ProcessSenderKeyDistribution(ctx, groupJID, alice.jid, b)
		}
		if errors.Is(err, ErrLibraryPanic) {
			t.Fatalf("libsignal panicked on input we should refuse first: %v", err)
		}
	})
}
