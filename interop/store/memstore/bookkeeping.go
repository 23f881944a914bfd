package memstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/state/record"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

// maxPreKeyID is the largest id that fits the 3 bytes of the upload format.
const maxPreKeyID = 0xFFFFFF

func unixTime(sec int64) time.Time { return time.Unix(sec, 0) }

// GeneratePreKeys makes count new one-time prekeys with ids following the last batch
// (wrapping within 1..0xFFFFFF) and stores them as not uploaded.
func (s *Store) GeneratePreKeys(ctx context.Context, count int) ([]*record.PreKey, error) {
	if count < 0 || count > maxPreKeyID {
		return nil, fmt.Errorf("memstore: cannot generate %d prekeys", count)
	}
	// Key generation happens outside the lock; ids are assigned under it.
	pairs := make([]*ecc.ECKeyPair, count)
	for i := range pairs {
		kp, err := ecc.GenerateKeyPair()
		if err != nil {
			return nil, fmt.Errorf("failed to generate prekey: %w", err)
		}
		pairs[i] = kp
	}
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	last, _ := s.lastPreKeyID.get(tx, struct{}{})
	out := make([]*record.PreKey, count)
	for i, kp := range pairs {
		last = last%maxPreKeyID + 1
		out[i] = record.NewPreKey(last, kp, serializer.PreKeyRecord)
		s.preKeys.put(tx, last, preKeyRow{rec: out[i]})
	}
	s.lastPreKeyID.put(tx, struct{}{}, last)
	return out, nil
}

// UnuploadedPreKeys returns the prekeys not yet marked uploaded, ordered by id.
func (s *Store) UnuploadedPreKeys(ctx context.Context) ([]*record.PreKey, error) {
	tx := s.begin(ctx)
	ids := s.preKeys.keys(tx, func(_ uint32, r preKeyRow) bool { return !r.uploaded })
	slices.Sort(ids)
	out := make([]*record.PreKey, len(ids))
	for i, id := range ids {
		row, _ := s.preKeys.get(tx, id)
		out[i] = row.rec
	}
	s.mu.Unlock()
	return out, nil
}

// MarkPreKeysUploaded marks prekeys uploaded; ids that no longer exist are ignored.
func (s *Store) MarkPreKeysUploaded(ctx context.Context, ids []uint32) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, id := range ids {
		if row, ok := s.preKeys.get(tx, id); ok {
			row.uploaded = true
			s.preKeys.put(tx, id, row)
		}
	}
	return nil
}

// UploadedPreKeyCount counts uploaded prekeys not consumed yet.
func (s *Store) UploadedPreKeyCount(ctx context.Context) (int, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	return len(s.preKeys.keys(tx, func(_ uint32, r preKeyRow) bool { return r.uploaded })), nil
}

// newestSignedPreKey picks the latest by creation time, the higher id on a tie.
func (s *Store) newestSignedPreKey(tx *txn) (uint32, signedPreKeyRow, bool) {
	var bestID uint32
	var best signedPreKeyRow
	found := false
	for _, id := range s.signedPreKeys.keys(tx, all) {
		row, _ := s.signedPreKeys.get(tx, id)
		if !found || row.createdAt.After(best.createdAt) || (row.createdAt.Equal(best.createdAt) && id > bestID) {
			bestID, best, found = id, row, true
		}
	}
	return bestID, best, found
}

// LatestSignedPreKey returns the newest signed prekey, or store.ErrNotFound.
func (s *Store) LatestSignedPreKey(ctx context.Context) (*store.SignedPreKeyInfo, error) {
	tx := s.begin(ctx)
	_, row, ok := s.newestSignedPreKey(tx)
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no signed prekey: %w", store.ErrNotFound)
	}
	return &store.SignedPreKeyInfo{Record: row.rec, CreatedAt: row.createdAt}, nil
}

// StoreSignedPreKeyAt stores a signed prekey with its creation time.
func (s *Store) StoreSignedPreKeyAt(ctx context.Context, rec *record.SignedPreKey, createdAt time.Time) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.signedPreKeys.put(tx, rec.ID(), signedPreKeyRow{rec: rec, createdAt: createdAt})
	return nil
}

// PruneSignedPreKeys removes signed prekeys created before the cutoff, never the
// newest one.
func (s *Store) PruneSignedPreKeys(ctx context.Context, before time.Time) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	newest, _, _ := s.newestSignedPreKey(tx)
	for _, id := range s.signedPreKeys.keys(tx, func(id uint32, r signedPreKeyRow) bool {
		return id != newest && r.createdAt.Before(before)
	}) {
		s.signedPreKeys.del(tx, id)
	}
	return nil
}

// SenderKeyHolders returns the devices that hold our current sender key for a group.
func (s *Store) SenderKeyHolders(ctx context.Context, group jid.JID) (map[jid.JID]struct{}, error) {
	tx := s.begin(ctx)
	defer s.mu.Unlock()
	out := make(map[jid.JID]struct{})
	for _, k := range s.holders.keys(tx, func(k holderKey, _ struct{}) bool { return k.group == group }) {
		out[k.device] = struct{}{}
	}
	return out, nil
}

// AddSenderKeyHolders records that these devices received our current sender key.
func (s *Store) AddSenderKeyHolders(ctx context.Context, group jid.JID, devices []jid.JID) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, d := range devices {
		s.holders.put(tx, holderKey{group: group, device: d}, struct{}{})
	}
	return nil
}

// ResetSenderKey forgets our own sender key for the group (the one named by the
// account's SignalAddress) and who holds it.
func (s *Store) ResetSenderKey(ctx context.Context, group jid.JID) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	own := s.acc.JID.SignalAddress()
	s.senderKeys.del(tx, senderKeyID{group: group.String(), sender: addrOf(own)})
	for _, k := range s.holders.keys(tx, func(k holderKey, _ struct{}) bool { return k.group == group }) {
		s.holders.del(tx, k)
	}
	return nil
}

// PutSentMessage keeps a copy of what we sent (replacing one with the same chat and id).
func (s *Store) PutSentMessage(ctx context.Context, msg *store.SentMessage) error {
	cp := *msg
	cp.Plaintext = slices.Clone(msg.Plaintext)
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.sent.put(tx, sentKey{chat: msg.Chat, id: msg.ID}, cp)
	return nil
}

// GetSentMessage returns a copy of a kept message, or store.ErrNotFound.
func (s *Store) GetSentMessage(ctx context.Context, chat jid.JID, id string) (*store.SentMessage, error) {
	tx := s.begin(ctx)
	msg, ok := s.sent.get(tx, sentKey{chat: chat, id: id})
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("sent message %s in %s: %w", id, chat, store.ErrNotFound)
	}
	msg.Plaintext = slices.Clone(msg.Plaintext)
	return &msg, nil
}

// PruneSentMessages drops copies sent before the cutoff.
func (s *Store) PruneSentMessages(ctx context.Context, before time.Time) error {
	tx, err := s.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, k := range s.sent.keys(tx, func(_ sentKey, m store.SentMessage) bool { return m.SentAt.Before(before) }) {
		s.sent.del(tx, k)
	}
	return nil
}
