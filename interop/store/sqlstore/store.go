package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

var (
	_ store.Store = (*signalStore)(nil)
	_ releaser    = (*txnCache[cachedSession])(nil)
	_ releaser    = (*txnCache[cachedIdentity])(nil)
)

// signalStore is the store of one account; every query is scoped to its JID.
type signalStore struct {
	c   *Container
	db  *dbutil.Database
	ser *serialize.Serializer
	acc *store.Account
	jid string

	sessions   *txnCache[cachedSession]
	identities *txnCache[cachedIdentity]
}

// cachedSession is what the session cache knows about one remote device.
type cachedSession struct {
	// rec is the decoded record as last stored. LoadSession hands it out once and
	// leaves nil behind, because libsignal mutates the record it loaded even when
	// decryption then fails and the record is never stored; StoreSession puts the
	// (mutated) record back. A load while it is handed out decodes a fresh copy.
	rec     *record.Session
	present bool // false: known to have no session
}

// cachedIdentity is the identity key recorded for one remote device, if any.
type cachedIdentity struct {
	key     [32]byte
	present bool
}

func newSignalStore(c *Container, acc *store.Account) *signalStore {
	return &signalStore{
		c:          c,
		db:         c.db,
		ser:        c.ser,
		acc:        acc,
		jid:        acc.JID.String(),
		sessions:   newTxnCache[cachedSession](),
		identities: newTxnCache[cachedIdentity](),
	}
}

func (s *signalStore) Account() *store.Account { return s.acc }

func (s *signalStore) DoTxn(ctx context.Context, fn func(ctx context.Context) error) error {
	return s.c.DoTxn(ctx, fn)
}

// write runs fn inside a transaction (the caller's, or a new one), so that cache
// claims always have a transaction to be released by.
func (s *signalStore) write(ctx context.Context, fn func(ctx context.Context, t *txn) error) error {
	return s.c.DoTxn(ctx, func(ctx context.Context) error {
		return fn(ctx, s.c.txnFrom(ctx))
	})
}

func (s *signalStore) claimAll(t *txn) {
	s.sessions.claimAll(t)
	s.identities.claimAll(t)
}

func (s *signalStore) evictAll() {
	s.sessions.evictAll()
	s.identities.evictAll()
}

// --- identities (libsignal IdentityKey store plus the project's helpers) ---

func (s *signalStore) GetIdentityKeyPair() *identity.KeyPair { return s.acc.IdentityKey }

func (s *signalStore) GetLocalRegistrationID() uint32 { return s.acc.RegistrationID }

func (s *signalStore) lookupIdentity(ctx context.Context, name string, dev uint32) (cachedIdentity, error) {
	t := s.c.txnFrom(ctx)
	v, hit, tk := s.identities.get(t, name, dev, nil)
	if hit {
		return v, nil
	}
	var raw []byte
	err := s.db.QueryRow(ctx,
		`SELECT identity FROM interop_identity WHERE account_jid=$1 AND their_name=$2 AND device_id=$3`,
		s.jid, name, dev).Scan(&raw)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		v = cachedIdentity{}
	case err != nil:
		return v, fmt.Errorf("failed to load identity: %w", err)
	case len(raw) != 32:
		return v, fmt.Errorf("failed to load identity: stored key has %d bytes", len(raw))
	default:
		v = cachedIdentity{key: [32]byte(raw), present: true}
	}
	s.identities.fill(t, name, dev, v, tk)
	return v, nil
}

// IsTrustedIdentity trusts on first use: an address with no recorded key trusts any
// key; afterwards only the recorded key is trusted. A different key returns false,
// and the Signal layer then handles the identity change (DeleteSessionsOf and
// DeleteIdentitiesOf, then a new session), after which the new key is trusted.
func (s *signalStore) IsTrustedIdentity(ctx context.Context, addr *protocol.SignalAddress, key *identity.Key) (bool, error) {
	if key == nil {
		return false, errors.New("failed to check identity: no key given")
	}
	v, err := s.lookupIdentity(ctx, addr.Name(), addr.DeviceID())
	if err != nil {
		return false, err
	}
	return !v.present || v.key == key.PublicKey().PublicKey(), nil
}

// SaveIdentity records the key of an address. Saving the key already recorded writes
// nothing, since libsignal calls this on every encrypt and decrypt.
func (s *signalStore) SaveIdentity(ctx context.Context, addr *protocol.SignalAddress, key *identity.Key) error {
	if key == nil {
		return errors.New("failed to save identity: no key given")
	}
	name, dev := addr.Name(), addr.DeviceID()
	pub := key.PublicKey().PublicKey()
	if v, err := s.lookupIdentity(ctx, name, dev); err != nil {
		return err
	} else if v.present && v.key == pub {
		return nil
	}
	return s.write(ctx, func(ctx context.Context, t *txn) error {
		s.identities.claim(t, name)
		_, err := s.db.Exec(ctx, `
			INSERT INTO interop_identity (account_jid, their_name, device_id, identity) VALUES ($1, $2, $3, $4)
			ON CONFLICT (account_jid, their_name, device_id) DO UPDATE SET identity=excluded.identity`,
			s.jid, name, dev, pub[:])
		if err != nil {
			return fmt.Errorf("failed to save identity: %w", err)
		}
		s.identities.put(t, name, dev, cachedIdentity{key: pub, present: true})
		return nil
	})
}

func (s *signalStore) GetIdentity(ctx context.Context, name string, deviceID uint32) (*identity.Key, error) {
	v, err := s.lookupIdentity(ctx, name, deviceID)
	if err != nil || !v.present {
		return nil, err
	}
	return identity.NewKey(ecc.NewDjbECPublicKey(v.key)), nil
}

func (s *signalStore) DeleteIdentitiesOf(ctx context.Context, name string) error {
	return s.write(ctx, func(ctx context.Context, t *txn) error {
		s.identities.claim(t, name)
		_, err := s.db.Exec(ctx, `DELETE FROM interop_identity WHERE account_jid=$1 AND their_name=$2`, s.jid, name)
		if err != nil {
			return fmt.Errorf("failed to delete identities: %w", err)
		}
		s.identities.evictName(name)
		return nil
	})
}

// decode runs a libsignal decoder and turns its panics on malformed input (it indexes
// without checking in places) into errors.
func decode[T any](what string, raw []byte, fn func([]byte) (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("failed to decode %s: malformed record (%v)", what, r)
		}
	}()
	v, err = fn(raw)
	if err != nil {
		return v, fmt.Errorf("failed to decode %s: %w", what, err)
	}
	return v, nil
}
