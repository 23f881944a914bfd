package sqlstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// TestConcurrentUse hammers one account from several goroutines: transactions that
// write prekeys, sessions and identities, next to plain reads. On SQLite the writers
// queue on the write lock (busy timeout); on PostgreSQL on the account row.
func TestConcurrentUse(t *testing.T) {
	const workers, rounds, perBatch = 6, 8, 5
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		alice, bob := newStore(t, c, aliceJID), newStore(t, c, bobJID)
		converse(t, alice, bob)
		template := sessionBytes(t, ctx, alice, bobJID.SignalAddress())
		ser := serialize.NewProtoBufSerializer()

		var mu sync.Mutex
		var ids []uint32
		errs := make(chan error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				errs <- worker(ctx, alice, ser, template, w, rounds, perBatch, func(batch []uint32) {
					mu.Lock()
					ids = append(ids, batch...)
					mu.Unlock()
				})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(ids)
		want := make([]uint32, workers*rounds*perBatch)
		for i := range want {
			want[i] = uint32(i + 1)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("concurrent batches got ids %v, want 1..%d each once", ids, len(want))
		}
		for _, s := range []store.Store{alice, reopen(t, c, alice)} {
			for w := range workers {
				for r := range rounds {
					addr := protocol.NewSignalAddress(fmt.Sprintf("%d@s.whatsapp.net", w), uint32(r))
					if got := sessionBytes(t, ctx, s, addr); !bytes.Equal(got, template) {
						t.Fatalf("session %s is wrong after concurrent writes", addr)
					}
				}
			}
		}
	})
}

func worker(ctx context.Context, s store.Store, ser *serialize.Serializer, template []byte, w, rounds, perBatch int,
	gotIDs func([]uint32)) error {
	name := fmt.Sprintf("%d@s.whatsapp.net", w)
	key := s.GetIdentityKeyPair().PublicKey() // any valid key will do
	for r := range rounds {
		addr := protocol.NewSignalAddress(name, uint32(r))
		err := s.DoTxn(ctx, func(ctx context.Context) error {
			keys, err := s.GeneratePreKeys(ctx, perBatch)
			if err != nil {
				return err
			}
			gotIDs(preKeyIDs(keys))
			// Each store gets its own decoded record: the cache keeps the object.
			rec, err := record.NewSessionFromBytes(template, ser.Session, ser.State)
			if err != nil {
				return err
			}
			if err = s.StoreSession(ctx, addr, rec); err != nil {
				return err
			}
			return s.SaveIdentity(ctx, addr, key)
		})
		if err != nil {
			return fmt.Errorf("worker %d round %d: %w", w, r, err)
		}
		// Reads outside any transaction, racing the other workers' writes.
		if ok, err := s.ContainsSession(ctx, addr); err != nil || !ok {
			return fmt.Errorf("worker %d: ContainsSession = %v, %v", w, ok, err)
		}
		if ok, err := s.IsTrustedIdentity(ctx, addr, key); err != nil || !ok {
			return fmt.Errorf("worker %d: IsTrustedIdentity = %v, %v", w, ok, err)
		}
		if _, err := s.UploadedPreKeyCount(ctx); err != nil {
			return fmt.Errorf("worker %d: %w", w, err)
		}
	}
	return nil
}
