package signal

import (
	"bytes"
	"context"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// benchMessage is about the size of a short serialized text Message.
var benchMessage = bytes.Repeat([]byte("m"), 100)

// benchBackends: memstore is the baseline for the SQLite-backed pipeline.
func benchBackends() []backend {
	return []backend{memBackend, sqlBackend(sqltest.Backend{Name: "sqlite", Open: sqltest.SQLite})}
}

// established returns two parties with a session acknowledged both ways.
func established(b *testing.B, newStore newStoreFunc) (alice, bob *party) {
	alice, bob = newParty(b, newStore, aliceJID), newParty(b, newStore, bob0JID)
	connect(b, alice, bob)
	mustDecrypt(b, bob, alice, encrypt(b, alice, bob, "hi"), "hi")
	mustDecrypt(b, alice, bob, encrypt(b, bob, alice, "hi"), "hi")
	return alice, bob
}

func discard(context.Context, []byte) error { return nil }

// BenchmarkSessionSetup: process a fetched bundle and encrypt the first pkmsg (on an
// empty session record: the old one is dropped first, so archived states do not pile
// up).
func BenchmarkSessionSetup(b *testing.B) {
	ctx := context.Background()
	newStore := memBackend.open(b)
	alice, bob := newParty(b, newStore, aliceJID), newParty(b, newStore, bob0JID)
	bundle, err := bob.m.OwnBundle(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := alice.m.DeleteSession(ctx, bob.jid); err != nil {
			b.Fatal(err)
		}
		if _, err := alice.m.ProcessBundle(ctx, bob.jid, bundle); err != nil {
			b.Fatal(err)
		}
		if _, err := alice.m.Encrypt(ctx, bob.jid, benchMessage); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	for _, be := range benchBackends() {
		b.Run(be.name, func(b *testing.B) {
			alice, bob := established(b, be.open(b))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := alice.m.Encrypt(ctx, bob.jid, benchMessage); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for _, be := range benchBackends() {
		b.Run(be.name, func(b *testing.B) {
			alice, bob := established(b, be.open(b))
			ctx := context.Background()
			// Decrypt in order what was encrypted beforehand, one chain step each.
			parts := make([]EncryptedPart, b.N)
			for i := range parts {
				parts[i] = encrypt(b, alice, bob, string(benchMessage))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := bob.m.Decrypt(ctx, alice.jid, parts[i].Type, parts[i].Ciphertext, discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPipeline: one message encrypted by Alice and decrypted by Bob.
func BenchmarkPipeline(b *testing.B) {
	for _, be := range benchBackends() {
		b.Run(be.name, func(b *testing.B) {
			alice, bob := established(b, be.open(b))
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				part, err := alice.m.Encrypt(ctx, bob.jid, benchMessage)
				if err != nil {
					b.Fatal(err)
				}
				if _, err = bob.m.Decrypt(ctx, alice.jid, part.Type, part.Ciphertext, discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGroupEncrypt(b *testing.B) {
	ctx := context.Background()
	alice := newParty(b, memBackend.open(b), aliceJID)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := alice.m.GroupEncrypt(ctx, groupJID, benchMessage); err != nil {
			b.Fatal(err)
		}
	}
}
