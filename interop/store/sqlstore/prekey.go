package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

// maxPreKeyID is the largest one-time prekey id: ids are sent as 3 bytes.
const maxPreKeyID = 0xFFFFFF

// insertBatch bounds the rows of one multi-row INSERT or IN list, well under SQLite's
// parameter limit.
const insertBatch = 400

// --- one-time prekeys ---

func (s *signalStore) decodePreKey(raw []byte) (*record.PreKey, error) {
	return decode("prekey", raw, func(b []byte) (*record.PreKey, error) {
		rec, err := record.NewPreKeyFromBytes(b, s.ser.PreKeyRecord)
		// The decoder accepts any JSON object and leaves missing keys zero; a zero
		// private key would be handed out as a usable prekey.
		if err != nil {
			return nil, err
		}
		if rec.KeyPair().PrivateKey().Serialize() == [32]byte{} {
			return nil, errors.New("record holds no key")
		}
		// libsignal's decoder keeps only 32 of the 33 serialized public key bytes (the
		// type byte counts as one), so rebuild the pair from the private key.
		return record.NewPreKey(rec.ID().Value, rebuildKeyPair(rec.KeyPair()), s.ser.PreKeyRecord), nil
	})
}

// rebuildKeyPair derives the public key again from the private key.
func rebuildKeyPair(pair *ecc.ECKeyPair) *ecc.ECKeyPair {
	priv := pair.PrivateKey().Serialize()
	return ecc.CreateKeyPair(priv[:])
}

// LoadPreKey returns a prekey, or nil when there is none (libsignal's convention).
func (s *signalStore) LoadPreKey(ctx context.Context, id uint32) (*record.PreKey, error) {
	var raw []byte
	err := s.db.QueryRow(ctx, `SELECT record FROM interop_prekey WHERE account_jid=$1 AND key_id=$2`, s.jid, id).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("failed to load prekey: %w", err)
	}
	return s.decodePreKey(raw)
}

// StorePreKey stores a prekey as not yet uploaded, replacing any with the same id.
func (s *signalStore) StorePreKey(ctx context.Context, id uint32, rec *record.PreKey) error {
	if rec == nil {
		return errors.New("failed to store prekey: nil record")
	}
	_, err := s.db.Exec(ctx, `
		INSERT INTO interop_prekey (account_jid, key_id, record) VALUES ($1, $2, $3)
		ON CONFLICT (account_jid, key_id) DO UPDATE SET record=excluded.record, uploaded=false`,
		s.jid, id, rec.Serialize())
	if err != nil {
		return fmt.Errorf("failed to store prekey: %w", err)
	}
	return nil
}

func (s *signalStore) ContainsPreKey(ctx context.Context, id uint32) (bool, error) {
	var exists bool
	err := s.db.QueryRow(ctx,
		`SELECT EXISTS(SELECT 1 FROM interop_prekey WHERE account_jid=$1 AND key_id=$2)`, s.jid, id).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("failed to check prekey: %w", err)
	}
	return exists, nil
}

func (s *signalStore) RemovePreKey(ctx context.Context, id uint32) error {
	_, err := s.db.Exec(ctx, `DELETE FROM interop_prekey WHERE account_jid=$1 AND key_id=$2`, s.jid, id)
	if err != nil {
		return fmt.Errorf("failed to remove prekey: %w", err)
	}
	return nil
}

// preKeyRow is one row of a multi-row prekey insert.
type preKeyRow struct {
	id  uint32
	raw []byte
}

func (r preKeyRow) GetMassInsertValues() [2]any { return [2]any{r.id, r.raw} }

func (s *signalStore) GeneratePreKeys(ctx context.Context, count int) ([]*record.PreKey, error) {
	if count <= 0 {
		return nil, nil
	} else if count > maxPreKeyID {
		return nil, fmt.Errorf("failed to generate prekeys: %d is more than there are ids", count)
	}
	keys := make([]*record.PreKey, 0, count)
	rows := make([]preKeyRow, 0, count)
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		// Advancing the counter first locks the account row (PostgreSQL) so that two
		// concurrent batches cannot get the same ids; SQLite transactions here are
		// IMMEDIATE and serialize on their own.
		var next uint32
		err := s.db.QueryRow(ctx, `
			UPDATE interop_account SET next_prekey_id = (next_prekey_id - 1 + $2) % $3 + 1
			WHERE jid=$1 RETURNING next_prekey_id`, s.jid, count, maxPreKeyID).Scan(&next)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("account %s: %w", s.jid, store.ErrNotFound)
		} else if err != nil {
			return err
		}
		first := (int(next)-1-count+maxPreKeyID)%maxPreKeyID + 1
		for i := range count {
			id := uint32((first-1+i)%maxPreKeyID + 1)
			keyPair, err := ecc.GenerateKeyPair()
			if err != nil {
				return err
			}
			rec := record.NewPreKey(id, keyPair, s.ser.PreKeyRecord)
			keys = append(keys, rec)
			rows = append(rows, preKeyRow{id: id, raw: rec.Serialize()})
		}
		for chunk := range chunks(rows, insertBatch) {
			query, params := s.c.preKeyInserter.Build([1]any{s.jid}, chunk)
			if _, err := s.db.Exec(ctx, query, params...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to generate prekeys: %w", err)
	}
	return keys, nil
}

func (s *signalStore) UnuploadedPreKeys(ctx context.Context) ([]*record.PreKey, error) {
	rows, err := s.db.Query(ctx,
		`SELECT record FROM interop_prekey WHERE account_jid=$1 AND uploaded=false ORDER BY key_id`, s.jid)
	raws, err := dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[[]byte], err).AsList()
	if err != nil {
		return nil, fmt.Errorf("failed to list unuploaded prekeys: %w", err)
	}
	keys := make([]*record.PreKey, len(raws))
	for i, raw := range raws {
		if keys[i], err = s.decodePreKey(raw); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func (s *signalStore) MarkPreKeysUploaded(ctx context.Context, ids []uint32) error {
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		for chunk := range chunks(ids, insertBatch) {
			query, params := inList(`UPDATE interop_prekey SET uploaded=true WHERE account_jid=$1 AND key_id IN `, s.jid, chunk)
			if _, err := s.db.Exec(ctx, query, params...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to mark prekeys uploaded: %w", err)
	}
	return nil
}

func (s *signalStore) UploadedPreKeyCount(ctx context.Context) (n int, err error) {
	err = s.db.QueryRow(ctx,
		`SELECT COUNT(*) FROM interop_prekey WHERE account_jid=$1 AND uploaded=true`, s.jid).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("failed to count uploaded prekeys: %w", err)
	}
	return n, nil
}

// chunks splits items into consecutive slices of at most size elements.
func chunks[T any](items []T, size int) func(yield func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(items) > 0 {
			n := min(size, len(items))
			if !yield(items[:n]) {
				return
			}
			items = items[n:]
		}
	}
}

// inList appends "($2, $3, ...)" for ids to prefix; $1 is first.
func inList(prefix string, first any, ids []uint32) (string, []any) {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteByte('(')
	params := make([]any, 0, len(ids)+1)
	params = append(params, first)
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(i+2))
		params = append(params, id)
	}
	b.WriteByte(')')
	return b.String(), params
}

// --- signed prekeys ---

func (s *signalStore) decodeSignedPreKey(raw []byte) (*record.SignedPreKey, error) {
	return decode("signed prekey", raw, func(b []byte) (*record.SignedPreKey, error) {
		rec, err := record.NewSignedPreKeyFromBytes(b, s.ser.SignedPreKeyRecord)
		if err != nil {
			return nil, err
		}
		if rec.KeyPair().PrivateKey().Serialize() == [32]byte{} {
			return nil, errors.New("record holds no key")
		}
		return record.NewSignedPreKey(rec.ID(), rec.Timestamp(), rebuildKeyPair(rec.KeyPair()),
			rec.Signature(), s.ser.SignedPreKeyRecord), nil
	})
}

// LoadSignedPreKey returns a signed prekey, or nil when there is none.
func (s *signalStore) LoadSignedPreKey(ctx context.Context, id uint32) (*record.SignedPreKey, error) {
	var raw []byte
	err := s.db.QueryRow(ctx,
		`SELECT record FROM interop_signed_prekey WHERE account_jid=$1 AND key_id=$2`, s.jid, id).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("failed to load signed prekey: %w", err)
	}
	return s.decodeSignedPreKey(raw)
}

// LoadSignedPreKeys returns every signed prekey, ordered by id.
func (s *signalStore) LoadSignedPreKeys(ctx context.Context) ([]*record.SignedPreKey, error) {
	rows, err := s.db.Query(ctx,
		`SELECT record FROM interop_signed_prekey WHERE account_jid=$1 ORDER BY key_id`, s.jid)
	raws, err := dbutil.NewRowIterWithError(rows, dbutil.ScanSingleColumn[[]byte], err).AsList()
	if err != nil {
		return nil, fmt.Errorf("failed to load signed prekeys: %w", err)
	}
	recs := make([]*record.SignedPreKey, len(raws))
	for i, raw := range raws {
		if recs[i], err = s.decodeSignedPreKey(raw); err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// StoreSignedPreKey stores a signed prekey created now; StoreSignedPreKeyAt sets the time.
func (s *signalStore) StoreSignedPreKey(ctx context.Context, id uint32, rec *record.SignedPreKey) error {
	if rec != nil && rec.ID() != id {
		return fmt.Errorf("failed to store signed prekey: record id %d is not %d", rec.ID(), id)
	}
	return s.StoreSignedPreKeyAt(ctx, rec, time.Now())
}

func (s *signalStore) StoreSignedPreKeyAt(ctx context.Context, rec *record.SignedPreKey, createdAt time.Time) error {
	if rec == nil {
		return errors.New("failed to store signed prekey: nil record")
	}
	_, err := s.db.Exec(ctx, `
		INSERT INTO interop_signed_prekey (account_jid, key_id, record, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (account_jid, key_id) DO UPDATE SET record=excluded.record, created_at=excluded.created_at`,
		s.jid, rec.ID(), rec.Serialize(), createdAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("failed to store signed prekey: %w", err)
	}
	return nil
}

func (s *signalStore) ContainsSignedPreKey(ctx context.Context, id uint32) (bool, error) {
	var exists bool
	err := s.db.QueryRow(ctx,
		`SELECT EXISTS(SELECT 1 FROM interop_signed_prekey WHERE account_jid=$1 AND key_id=$2)`, s.jid, id).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("failed to check signed prekey: %w", err)
	}
	return exists, nil
}

func (s *signalStore) RemoveSignedPreKey(ctx context.Context, id uint32) error {
	_, err := s.db.Exec(ctx, `DELETE FROM interop_signed_prekey WHERE account_jid=$1 AND key_id=$2`, s.jid, id)
	if err != nil {
		return fmt.Errorf("failed to remove signed prekey: %w", err)
	}
	return nil
}

// newestSignedPreKey orders signed prekeys newest first; the id breaks ties between
// keys made in the same millisecond.
const newestSignedPreKey = `ORDER BY created_at DESC, key_id DESC LIMIT 1`

func (s *signalStore) LatestSignedPreKey(ctx context.Context) (*store.SignedPreKeyInfo, error) {
	var raw []byte
	var createdAt int64
	err := s.db.QueryRow(ctx,
		`SELECT record, created_at FROM interop_signed_prekey WHERE account_jid=$1 `+newestSignedPreKey,
		s.jid).Scan(&raw, &createdAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("failed to load latest signed prekey: %w", store.ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("failed to load latest signed prekey: %w", err)
	}
	rec, err := s.decodeSignedPreKey(raw)
	if err != nil {
		return nil, err
	}
	return &store.SignedPreKeyInfo{Record: rec, CreatedAt: time.UnixMilli(createdAt)}, nil
}

func (s *signalStore) PruneSignedPreKeys(ctx context.Context, before time.Time) error {
	_, err := s.db.Exec(ctx, `
		DELETE FROM interop_signed_prekey WHERE account_jid=$1 AND created_at < $2 AND key_id <> (
			SELECT key_id FROM interop_signed_prekey WHERE account_jid=$1 `+newestSignedPreKey+`
		)`, s.jid, before.UnixMilli())
	if err != nil {
		return fmt.Errorf("failed to prune signed prekeys: %w", err)
	}
	return nil
}
