package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/util/keyhelper"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

func preKeyIDs(keys []*record.PreKey) []uint32 {
	ids := make([]uint32, len(keys))
	for i, k := range keys {
		ids[i] = k.ID().Value
	}
	return ids
}

func TestPreKeys(t *testing.T) {
	type check struct {
		unuploaded []uint32
		uploaded   int
	}
	steps := []struct {
		name    string
		counter uint32 // if set, next_prekey_id is forced to it first
		run     func(ctx context.Context, s store.Store) ([]uint32, error)
		wantIDs []uint32 // ids returned by a GeneratePreKeys step
		want    check
	}{
		{name: "first batch starts at 1", run: generate(3), wantIDs: []uint32{1, 2, 3},
			want: check{unuploaded: []uint32{1, 2, 3}}},
		{name: "next batch continues", run: generate(2), wantIDs: []uint32{4, 5},
			want: check{unuploaded: []uint32{1, 2, 3, 4, 5}}},
		{name: "mark uploaded", run: markUploaded(1, 2, 3),
			want: check{unuploaded: []uint32{4, 5}, uploaded: 3}},
		{name: "mark unknown id", run: markUploaded(999),
			want: check{unuploaded: []uint32{4, 5}, uploaded: 3}},
		{name: "consumed key leaves the count", run: func(ctx context.Context, s store.Store) ([]uint32, error) {
			return nil, s.RemovePreKey(ctx, 2)
		}, want: check{unuploaded: []uint32{4, 5}, uploaded: 2}},
		{name: "zero is a no-op", run: generate(0), want: check{unuploaded: []uint32{4, 5}, uploaded: 2}},
		{name: "failed transaction does not use up ids", run: func(ctx context.Context, s store.Store) ([]uint32, error) {
			err := s.DoTxn(ctx, func(ctx context.Context) error {
				if _, err := s.GeneratePreKeys(ctx, 10); err != nil {
					return err
				}
				return errAbort
			})
			if !errors.Is(err, errAbort) {
				return nil, err
			}
			return nil, nil
		}, want: check{unuploaded: []uint32{4, 5}, uploaded: 2}},
		{name: "after the rollback ids continue at 6", run: generate(1), wantIDs: []uint32{6},
			want: check{unuploaded: []uint32{4, 5, 6}, uploaded: 2}},
		{
			// Ids wrap within 1..0xFFFFFF; a reused id replaces the old key, which is
			// then no longer counted as uploaded.
			name: "wrap", counter: 0xFFFFFE, run: generate(3), wantIDs: []uint32{0xFFFFFE, 0xFFFFFF, 1},
			want: check{unuploaded: []uint32{1, 4, 5, 6, 0xFFFFFE, 0xFFFFFF}, uploaded: 1},
		},
		{name: "after the wrap", run: generate(1), wantIDs: []uint32{2},
			want: check{unuploaded: []uint32{1, 2, 4, 5, 6, 0xFFFFFE, 0xFFFFFF}, uploaded: 1}},
	}
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		c := newContainer(t, db)
		s := newStore(t, c, aliceJID)
		for _, step := range steps {
			if step.counter != 0 {
				if _, err := c.db.Exec(ctx, `UPDATE interop_account SET next_prekey_id=$1`, step.counter); err != nil {
					t.Fatal(err)
				}
			}
			ids, err := step.run(ctx, s)
			if err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if !slices.Equal(ids, step.wantIDs) {
				t.Errorf("%s: generated ids %v, want %v", step.name, ids, step.wantIDs)
			}
			unuploaded, err := s.UnuploadedPreKeys(ctx)
			if got := preKeyIDs(unuploaded); err != nil || !slices.Equal(got, step.want.unuploaded) {
				t.Errorf("%s: unuploaded %v, %v; want %v", step.name, got, err, step.want.unuploaded)
			}
			if n, err := s.UploadedPreKeyCount(ctx); err != nil || n != step.want.uploaded {
				t.Errorf("%s: uploaded count %d, %v; want %d", step.name, n, err, step.want.uploaded)
			}
		}
		if _, err := s.GeneratePreKeys(ctx, maxPreKeyID+1); err == nil {
			t.Error("GeneratePreKeys accepted more keys than there are ids")
		}
	})
}

func generate(n int) func(ctx context.Context, s store.Store) ([]uint32, error) {
	return func(ctx context.Context, s store.Store) ([]uint32, error) {
		keys, err := s.GeneratePreKeys(ctx, n)
		if err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return nil, nil
		}
		// What was returned must be what was stored.
		for _, k := range keys {
			stored, err := s.LoadPreKey(ctx, k.ID().Value)
			if err != nil || stored == nil || !bytes.Equal(stored.Serialize(), k.Serialize()) {
				return nil, errors.New("generated prekey differs from the stored one")
			}
		}
		return preKeyIDs(keys), nil
	}
}

func markUploaded(ids ...uint32) func(ctx context.Context, s store.Store) ([]uint32, error) {
	return func(ctx context.Context, s store.Store) ([]uint32, error) {
		return nil, s.MarkPreKeysUploaded(ctx, ids)
	}
}

func TestPreKeyMethods(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		s := newStore(t, newContainer(t, db), aliceJID)
		ser := serialize.NewProtoBufSerializer()
		keys, err := keyhelper.GeneratePreKeys(7, 7, ser.PreKeyRecord) // the last id, not a count
		if err != nil || len(keys) != 1 {
			t.Fatal(keys, err)
		}
		if pk, err := s.LoadPreKey(ctx, 7); pk != nil || err != nil {
			t.Errorf("LoadPreKey of a missing key = %v, %v; want nil, nil", pk, err)
		}
		if err = s.StorePreKey(ctx, 7, keys[0]); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.ContainsPreKey(ctx, 7); err != nil || !ok {
			t.Errorf("ContainsPreKey = %v, %v", ok, err)
		}
		if pk, err := s.LoadPreKey(ctx, 7); err != nil || pk == nil ||
			pk.KeyPair().PrivateKey().Serialize() != keys[0].KeyPair().PrivateKey().Serialize() {
			t.Errorf("LoadPreKey did not round-trip: %v", err)
		} else if !bytes.Equal(pk.KeyPair().PublicKey().Serialize(), keys[0].KeyPair().PublicKey().Serialize()) {
			t.Error("LoadPreKey returned a different public key: peers would get a broken bundle")
		}
		if err = s.RemovePreKey(ctx, 7); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.ContainsPreKey(ctx, 7); err != nil || ok {
			t.Errorf("ContainsPreKey after remove = %v, %v", ok, err)
		}
	})
}

func TestSignedPreKeys(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		ctx := context.Background()
		s := newStore(t, newContainer(t, db), aliceJID)
		ser := serialize.NewProtoBufSerializer()
		if _, err := s.LatestSignedPreKey(ctx); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("LatestSignedPreKey on empty store: %v, want ErrNotFound", err)
		}
		if spk, err := s.LoadSignedPreKey(ctx, 1); spk != nil || err != nil {
			t.Fatalf("LoadSignedPreKey of a missing key = %v, %v; want nil, nil", spk, err)
		}
		base := time.UnixMilli(time.Now().UnixMilli())
		// Ids deliberately out of time order: "latest" is by creation time.
		made := map[uint32]time.Time{5: base, 3: base.Add(time.Hour), 4: base.Add(2 * time.Hour)}
		recs := map[uint32]*record.SignedPreKey{}
		for id, at := range made {
			rec, err := keyhelper.GenerateSignedPreKey(s.GetIdentityKeyPair(), id, ser.SignedPreKeyRecord)
			if err != nil {
				t.Fatal(err)
			}
			recs[id] = rec
			if err = s.StoreSignedPreKeyAt(ctx, rec, at); err != nil {
				t.Fatal(err)
			}
		}
		latest, err := s.LatestSignedPreKey(ctx)
		if err != nil || latest.Record.ID() != 4 || !latest.CreatedAt.Equal(made[4]) ||
			latest.Record.Signature() != recs[4].Signature() {
			t.Fatalf("LatestSignedPreKey = %+v, %v; want id 4", latest, err)
		}
		if !bytes.Equal(latest.Record.KeyPair().PublicKey().Serialize(), recs[4].KeyPair().PublicKey().Serialize()) {
			t.Error("LatestSignedPreKey returned a different public key: peers would get a broken bundle")
		}
		all, err := s.LoadSignedPreKeys(ctx)
		if err != nil || len(all) != 3 || all[0].ID() != 3 || all[2].ID() != 5 {
			t.Fatalf("LoadSignedPreKeys = %v, %v", all, err)
		}
		prunes := []struct {
			before time.Time
			left   []uint32
		}{
			{base, []uint32{3, 4, 5}},                    // nothing is older than the oldest
			{base.Add(30 * time.Minute), []uint32{3, 4}}, // drops only id 5
			{base.Add(24 * time.Hour), []uint32{4}},      // everything is old: the newest stays
			{base.Add(48 * time.Hour), []uint32{4}},      // and keeps staying
		}
		for _, p := range prunes {
			if err = s.PruneSignedPreKeys(ctx, p.before); err != nil {
				t.Fatal(err)
			}
			var left []uint32
			for _, id := range []uint32{3, 4, 5} {
				if ok, err := s.ContainsSignedPreKey(ctx, id); err != nil {
					t.Fatal(err)
				} else if ok {
					left = append(left, id)
				}
			}
			if !slices.Equal(left, p.left) {
				t.Errorf("after pruning before %s: %v left, want %v", p.before.Sub(base), left, p.left)
			}
		}
		if err = s.StoreSignedPreKey(ctx, 9, recs[4]); err == nil {
			t.Error("StoreSignedPreKey accepted a record whose id differs from the argument")
		}
		if err = s.RemoveSignedPreKey(ctx, 4); err != nil {
			t.Fatal(err)
		}
		if spk, err := s.LoadSignedPreKey(ctx, 4); spk != nil || err != nil {
			t.Errorf("LoadSignedPreKey after remove = %v, %v", spk, err)
		}
	})
}
