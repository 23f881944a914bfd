package sqlstore

import (
	"context"
	"testing"

	"go.mau.fi/libsignal/protocol"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// benchSession sets up Alice with an established session to Bob, after a few rounds
// of conversation, as the session records of a live chat look.
func benchSession(b *testing.B, be sqltest.Backend) (*signalStore, *protocol.SignalAddress) {
	b.Helper()
	ctx := context.Background()
	c := newContainer(b, be.Open(b))
	alice, bob := newStore(b, c, aliceJID), newStore(b, c, bobJID)
	pa, pb := converse(b, alice, bob)
	for range 5 {
		if _, err := pb.decrypt(ctx, pa.encrypt(b, ctx, []byte("ping")), false); err != nil {
			b.Fatal(err)
		}
		if _, err := pa.decrypt(ctx, pb.encrypt(b, ctx, []byte("pong")), false); err != nil {
			b.Fatal(err)
		}
	}
	return alice.(*signalStore), bobJID.SignalAddress()
}

// BenchmarkStoreSession: one session write, in its own transaction.
func BenchmarkStoreSession(b *testing.B) {
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			s, addr := benchSession(b, be)
			rec, err := s.LoadSession(ctx, addr)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := s.StoreSession(ctx, addr, rec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(rec.Serialize())), "record_bytes")
		})
	}
}

// BenchmarkLoadSessionCached: LoadSession when the cache holds the decoded record, as
// it does after every StoreSession. The loop puts the record back the way
// StoreSession does, minus the SQL write.
func BenchmarkLoadSessionCached(b *testing.B) {
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			s, addr := benchSession(b, be)
			for b.Loop() {
				rec, err := s.LoadSession(ctx, addr)
				if err != nil || rec.IsFresh() {
					b.Fatal("no session", err)
				}
				s.sessions.put(nil, addr.Name(), addr.DeviceID(), cachedSession{rec: rec, present: true})
			}
		})
	}
}

// BenchmarkLoadSessionUncached: LoadSession when the record must be read and decoded
// (the record was handed out and not stored back), for comparison.
func BenchmarkLoadSessionUncached(b *testing.B) {
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			s, addr := benchSession(b, be)
			for b.Loop() {
				if rec, err := s.LoadSession(ctx, addr); err != nil || rec.IsFresh() {
					b.Fatal("no session", err)
				}
			}
		})
	}
}

// BenchmarkEncrypt: a whole libsignal encrypt through the store (load, trust check,
// identity save, store), each in its own transaction as the Signal layer runs it.
func BenchmarkEncrypt(b *testing.B) {
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			s, _ := benchSession(b, be)
			p := newPeer(s, s.c.StoreFor(mustAccount(b, s.c, bobJID)))
			cipher := p.cipher()
			for b.Loop() {
				err := s.DoTxn(ctx, func(ctx context.Context) error {
					_, err := cipher.Encrypt(ctx, []byte("benchmark"))
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
