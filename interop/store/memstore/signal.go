package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"go.mau.fi/libsignal/ecc"
	grouprecord "go.mau.fi/libsignal/groups/state/record"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/state/record"
)

func addrOf(a *protocol.SignalAddress) address {
	return address{name: a.Name(), device: a.DeviceID()}
}

// GetIdentityKeyPair returns the account's identity key pair.
func (s *Store) GetIdentityKeyPair() *identity.KeyPair { return s.acc.IdentityKey }

// GetLocalRegistrationID returns the account's registration id.
func (s *Store) GetLocalRegistrationID() uint32 { return s.acc.RegistrationID }

// SaveIdentity records (or replaces) the identity key of a remote device.
func (s *Store) SaveIdentity(ctx context.Context, a *protocol.SignalAddress, key *identity.Key) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.identities.put(tx, addrOf(a), key.Serialize())
	return nil
}

// IsTrustedIdentity is trust on first use: an unknown device is trusted, a known one
// only with the key recorded for it.
func (s *Store) IsTrustedIdentity(ctx context.Context, a *protocol.SignalAddress, key *identity.Key) (bool, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	known, ok := s.identities.get(tx, addrOf(a))
	return !ok || bytes.Equal(known, key.Serialize()), nil
}

// GetIdentity returns the identity key recorded for a remote device, nil when none.
func (s *Store) GetIdentity(ctx context.Context, name string, deviceID uint32) (*identity.Key, error) {
	tx := s.begin(ctx)
	known, ok := s.identities.get(tx, address{name, deviceID})
	s.mu.Unlock()
	if !ok {
		return nil, nil
	}
	pub, err := ecc.DecodePoint(known, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to decode stored identity key: %w", err)
	}
	return identity.NewKey(pub), nil
}

// DeleteIdentitiesOf forgets the identity keys of every device of a user.
func (s *Store) DeleteIdentitiesOf(ctx context.Context, name string) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, k := range s.identities.keys(tx, func(k address, _ []byte) bool { return k.name == name }) {
		s.identities.del(tx, k)
	}
	return nil
}

// LoadPreKey returns a one-time prekey, nil when unknown (libsignal checks for nil).
func (s *Store) LoadPreKey(ctx context.Context, id uint32) (*record.PreKey, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	row, ok := s.preKeys.get(tx, id)
	if !ok {
		return nil, nil
	}
	return row.rec, nil
}

// StorePreKey stores a one-time prekey as not uploaded.
func (s *Store) StorePreKey(ctx context.Context, id uint32, rec *record.PreKey) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.preKeys.put(tx, id, preKeyRow{rec: rec})
	return nil
}

// ContainsPreKey reports whether a one-time prekey exists.
func (s *Store) ContainsPreKey(ctx context.Context, id uint32) (bool, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	_, ok := s.preKeys.get(tx, id)
	return ok, nil
}

// RemovePreKey deletes a consumed one-time prekey.
func (s *Store) RemovePreKey(ctx context.Context, id uint32) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.preKeys.del(tx, id)
	return nil
}

// LoadSignedPreKey returns a signed prekey, nil when unknown (libsignal checks for nil).
func (s *Store) LoadSignedPreKey(ctx context.Context, id uint32) (*record.SignedPreKey, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	row, ok := s.signedPreKeys.get(tx, id)
	if !ok {
		return nil, nil
	}
	return row.rec, nil
}

// LoadSignedPreKeys returns every signed prekey, ordered by id.
func (s *Store) LoadSignedPreKeys(ctx context.Context) ([]*record.SignedPreKey, error) {
	tx := s.begin(ctx)
	ids := s.signedPreKeys.keys(tx, all)
	slices.Sort(ids)
	out := make([]*record.SignedPreKey, len(ids))
	for i, id := range ids {
		row, _ := s.signedPreKeys.get(tx, id)
		out[i] = row.rec
	}
	s.mu.Unlock()
	return out, nil
}

// StoreSignedPreKey stores a signed prekey, dated by its own timestamp.
func (s *Store) StoreSignedPreKey(ctx context.Context, id uint32, rec *record.SignedPreKey) error {
	return s.StoreSignedPreKeyAt(ctx, rec, unixTime(rec.Timestamp()))
}

// ContainsSignedPreKey reports whether a signed prekey exists.
func (s *Store) ContainsSignedPreKey(ctx context.Context, id uint32) (bool, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	_, ok := s.signedPreKeys.get(tx, id)
	return ok, nil
}

// RemoveSignedPreKey deletes a signed prekey.
func (s *Store) RemoveSignedPreKey(ctx context.Context, id uint32) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.signedPreKeys.del(tx, id)
	return nil
}

// LoadSession returns the session with a remote device, a fresh empty record when
// none (libsignal expects non-nil). Every call decodes a new object.
func (s *Store) LoadSession(ctx context.Context, a *protocol.SignalAddress) (*record.Session, error) {
	tx := s.begin(ctx)
	b, ok := s.sessions.get(tx, addrOf(a))
	s.mu.Unlock()
	if !ok {
		return record.NewSession(serializer.Session, serializer.State), nil
	}
	rec, err := record.NewSessionFromBytes(b, serializer.Session, serializer.State)
	if err != nil {
		return nil, fmt.Errorf("failed to decode stored session with %s: %w", a, err)
	}
	return rec, nil
}

// GetSubDeviceSessions lists the device ids of a user that we have sessions with.
func (s *Store) GetSubDeviceSessions(ctx context.Context, name string) ([]uint32, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	var out []uint32
	for _, k := range s.sessions.keys(tx, func(k address, _ []byte) bool { return k.name == name }) {
		out = append(out, k.device)
	}
	slices.Sort(out)
	return out, nil
}

// StoreSession stores a serialized copy of the record: later changes to rec do not
// reach the store.
func (s *Store) StoreSession(ctx context.Context, a *protocol.SignalAddress, rec *record.Session) error {
	b := rec.Serialize()
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.sessions.put(tx, addrOf(a), b)
	return nil
}

// ContainsSession reports whether a session with the device exists.
func (s *Store) ContainsSession(ctx context.Context, a *protocol.SignalAddress) (bool, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	_, ok := s.sessions.get(tx, addrOf(a))
	return ok, nil
}

// DeleteSession drops the session with one device.
func (s *Store) DeleteSession(ctx context.Context, a *protocol.SignalAddress) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.sessions.del(tx, addrOf(a))
	return nil
}

// DeleteAllSessions drops every session.
func (s *Store) DeleteAllSessions(ctx context.Context) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, k := range s.sessions.keys(tx, all) {
		s.sessions.del(tx, k)
	}
	return nil
}

// DeleteSessionsOf drops the sessions with every device of a user.
func (s *Store) DeleteSessionsOf(ctx context.Context, name string) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, k := range s.sessions.keys(tx, func(k address, _ []byte) bool { return k.name == name }) {
		s.sessions.del(tx, k)
	}
	return nil
}

func senderKeyOf(n *protocol.SenderKeyName) senderKeyID {
	return senderKeyID{group: n.GroupID(), sender: addrOf(n.Sender())}
}

// StoreSenderKey stores a serialized copy of a sender key record.
func (s *Store) StoreSenderKey(ctx context.Context, n *protocol.SenderKeyName, rec *grouprecord.SenderKey) error {
	b := rec.Serialize()
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.senderKeys.put(tx, senderKeyOf(n), b)
	return nil
}

// LoadSenderKey returns a sender key record, an empty one when none (libsignal's
// group cipher calls methods on it without a nil check).
func (s *Store) LoadSenderKey(ctx context.Context, n *protocol.SenderKeyName) (*grouprecord.SenderKey, error) {
	tx := s.begin(ctx)
	b, ok := s.senderKeys.get(tx, senderKeyOf(n))
	s.mu.Unlock()
	if !ok {
		return grouprecord.NewSenderKey(serializer.SenderKeyRecord, serializer.SenderKeyState), nil
	}
	rec, err := grouprecord.NewSenderKeyFromBytes(b, serializer.SenderKeyRecord, serializer.SenderKeyState)
	if err != nil {
		return nil, fmt.Errorf("failed to decode stored sender key: %w", err)
	}
	return rec, nil
}
