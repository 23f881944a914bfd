package gwstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// SignedPreKey is a device's current signed prekey.
type SignedPreKey struct {
	ID        uint32
	Pub       [32]byte
	Signature [64]byte
}

// PreKey is a one-time prekey.
type PreKey struct {
	ID  uint32
	Pub [32]byte
}

// Keys is a device's entry in the key directory (without its one-time prekeys).
type Keys struct {
	Registration uint32
	Identity     [32]byte
	SignedPreKey SignedPreKey
	UpdatedAt    time.Time
}

// UploadResult says what an upload changed.
type UploadResult struct {
	// First: the device had no keys before (it joins its user's device list).
	First bool
	// IdentityChanged: the device had keys with another identity; its old one-time
	// prekeys were dropped with it.
	IdentityChanged bool
	// Count is the number of one-time prekeys held after the upload.
	Count int
}

// GetKeys returns a device's keys, or ErrNotFound when it never uploaded any.
func (s *Store) GetKeys(ctx context.Context, device jid.JID) (*Keys, error) {
	var k Keys
	var reg, skeyID, updated int64
	var identity, pub, sig []byte
	err := s.db.QueryRow(ctx, `
		SELECT registration, identity, skey_id, skey_pub, skey_sig, updated_at
		FROM metasim_keys WHERE network=$1 AND device_jid=$2`, s.network, device.String()).
		Scan(&reg, &identity, &skeyID, &pub, &sig, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("failed to get keys: %w", err)
	}
	k.Registration, k.SignedPreKey.ID, k.UpdatedAt = uint32(reg), uint32(skeyID), fromMS(updated)
	if k.Identity, err = fixed32(identity, "identity"); err != nil {
		return nil, err
	}
	if k.SignedPreKey.Pub, err = fixed32(pub, "signed prekey"); err != nil {
		return nil, err
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("corrupt signature column: %d bytes", len(sig))
	}
	copy(k.SignedPreKey.Signature[:], sig)
	return &k, nil
}

// HasKeys reports whether a device uploaded keys.
func (s *Store) HasKeys(ctx context.Context, device jid.JID) (bool, error) {
	ok, err := s.exists(ctx, `SELECT 1 FROM metasim_keys WHERE network=$1 AND device_jid=$2`, s.network, device.String())
	if err != nil {
		return false, fmt.Errorf("failed to check keys: %w", err)
	}
	return ok, nil
}

// PutKeys stores an upload: registration, identity, signed prekey and more one-time
// prekeys (an id uploaded again replaces the old key). A different identity than the
// stored one means the device was reinstalled: its old one-time prekeys go.
func (s *Store) PutKeys(ctx context.Context, device jid.JID, k Keys, preKeys []PreKey) (UploadResult, error) {
	var res UploadResult
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		old, err := s.GetKeys(ctx, device)
		switch {
		case errors.Is(err, ErrNotFound):
			res.First = true
		case err != nil:
			return err
		case !bytes.Equal(old.Identity[:], k.Identity[:]):
			res.IdentityChanged = true
			if _, err := s.db.Exec(ctx, `DELETE FROM metasim_prekey WHERE network=$1 AND device_jid=$2`,
				s.network, device.String()); err != nil {
				return fmt.Errorf("failed to drop old prekeys: %w", err)
			}
		}
		_, err = s.db.Exec(ctx, `
			INSERT INTO metasim_keys (network, device_jid, user_jid, registration, identity, skey_id, skey_pub, skey_sig, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (network, device_jid) DO UPDATE SET registration=excluded.registration,
				identity=excluded.identity, skey_id=excluded.skey_id, skey_pub=excluded.skey_pub,
				skey_sig=excluded.skey_sig, updated_at=excluded.updated_at`,
			s.network, device.String(), device.ToUser().String(), int64(k.Registration), k.Identity[:],
			int64(k.SignedPreKey.ID), k.SignedPreKey.Pub[:], k.SignedPreKey.Signature[:], ms(k.UpdatedAt))
		if err != nil {
			return fmt.Errorf("failed to store keys: %w", err)
		}
		for _, pk := range preKeys {
			_, err = s.db.Exec(ctx, `
				INSERT INTO metasim_prekey (network, device_jid, key_id, pub) VALUES ($1, $2, $3, $4)
				ON CONFLICT (network, device_jid, key_id) DO UPDATE SET pub=excluded.pub`,
				s.network, device.String(), int64(pk.ID), pk.Pub[:])
			if err != nil {
				return fmt.Errorf("failed to store prekey: %w", err)
			}
		}
		res.Count, err = s.CountPreKeys(ctx, device)
		return err
	})
	return res, err
}

// SetSignedPreKey replaces a device's signed prekey (rotation).
func (s *Store) SetSignedPreKey(ctx context.Context, device jid.JID, spk SignedPreKey, now time.Time) error {
	res, err := s.db.Exec(ctx, `UPDATE metasim_keys SET skey_id=$3, skey_pub=$4, skey_sig=$5, updated_at=$6
		WHERE network=$1 AND device_jid=$2`,
		s.network, device.String(), int64(spk.ID), spk.Pub[:], spk.Signature[:], ms(now))
	if err != nil {
		return fmt.Errorf("failed to rotate signed prekey: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// CountPreKeys returns how many one-time prekeys a device has left.
func (s *Store) CountPreKeys(ctx context.Context, device jid.JID) (int, error) {
	var n int
	err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM metasim_prekey WHERE network=$1 AND device_jid=$2`,
		s.network, device.String()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("failed to count prekeys: %w", err)
	}
	return n, nil
}

// PopPreKey hands out (and deletes) the device's lowest one-time prekey, so it is
// never handed out again. It returns nil when none is left, and the count left after.
// The caller serializes pops of one device (the gateway holds a lock): two concurrent
// pops could otherwise pick the same row and one would come back empty.
func (s *Store) PopPreKey(ctx context.Context, device jid.JID) (*PreKey, int, error) {
	var out *PreKey
	var left int
	err := s.DoTxn(ctx, func(ctx context.Context) error {
		var id int64
		var pub []byte
		err := s.db.QueryRow(ctx, `SELECT key_id, pub FROM metasim_prekey WHERE network=$1 AND device_jid=$2
			ORDER BY key_id LIMIT 1`, s.network, device.String()).Scan(&id, &pub)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		} else if err != nil {
			return fmt.Errorf("failed to pick prekey: %w", err)
		}
		p, err := fixed32(pub, "prekey")
		if err != nil {
			return err
		}
		if _, err = s.db.Exec(ctx, `DELETE FROM metasim_prekey WHERE network=$1 AND device_jid=$2 AND key_id=$3`,
			s.network, device.String(), id); err != nil {
			return fmt.Errorf("failed to consume prekey: %w", err)
		}
		out = &PreKey{ID: uint32(id), Pub: p}
		left, err = s.CountPreKeys(ctx, device)
		return err
	})
	return out, left, err
}

// DeleteKeys drops a device's keys and prekeys.
func (s *Store) DeleteKeys(ctx context.Context, device jid.JID) error {
	return s.DoTxn(ctx, func(ctx context.Context) error {
		if _, err := s.db.Exec(ctx, `DELETE FROM metasim_keys WHERE network=$1 AND device_jid=$2`, s.network, device.String()); err != nil {
			return fmt.Errorf("failed to delete keys: %w", err)
		}
		if _, err := s.db.Exec(ctx, `DELETE FROM metasim_prekey WHERE network=$1 AND device_jid=$2`, s.network, device.String()); err != nil {
			return fmt.Errorf("failed to delete prekeys: %w", err)
		}
		return nil
	})
}

// KeyedDevices lists the devices of a user that uploaded keys: the device list the
// gateway hands out and checks phash against. Meta devices must also still be in the
// directory; a third-party account has only device 0.
func (s *Store) KeyedDevices(ctx context.Context, user jid.JID) ([]jid.JID, error) {
	user = user.ToUser()
	var out []jid.JID
	var err error
	if user.IsInterop() {
		out, err = s.queryJIDs(ctx, `SELECT device_jid FROM metasim_keys WHERE network=$1 AND device_jid=$2`,
			s.network, user.String())
	} else {
		out, err = s.queryJIDs(ctx, `
			SELECT k.device_jid FROM metasim_keys k
			JOIN metasim_device d ON d.network=k.network AND d.jid=k.device_jid
			WHERE k.network=$1 AND k.user_jid=$2 ORDER BY d.device_id`, s.network, user.String())
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list keyed devices: %w", err)
	}
	return out, nil
}
