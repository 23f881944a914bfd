// Package store defines what the Signal layer keeps per local account: libsignal's
// stores (identity, prekeys, signed prekeys, sessions, sender keys) plus the project's
// own bookkeeping (prekey upload state, signed prekey rotation, sender key
// distribution, copies of sent messages for retry receipts).
//
// Implementations: store/sqlstore (SQLite and PostgreSQL through dbutil) and
// store/memstore (tests, benchmarks, the simulator's in-memory mode). This package
// holds interfaces and plain types only; it must not import either implementation.
package store

import (
	"context"
	"errors"
	"time"

	groupstore "go.mau.fi/libsignal/groups/state/store"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/state/record"
	signalstore "go.mau.fi/libsignal/state/store"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// ErrNotFound is returned (wrapped) when a requested row does not exist.
var ErrNotFound = errors.New("not found in store")

// Account is one local Signal identity: a third-party account on the bridge, or one
// simulated device in metasim.
type Account struct {
	JID            jid.JID
	RegistrationID uint32
	IdentityKey    *identity.KeyPair
	CreatedAt      time.Time
}

// SignedPreKeyInfo is a signed prekey with the time it was made, for rotation.
type SignedPreKeyInfo struct {
	Record    *record.SignedPreKey
	CreatedAt time.Time
}

// SentMessage is the plaintext of a message we sent, kept to answer retry receipts.
type SentMessage struct {
	Chat      jid.JID // the 1:1 peer (user JID) or the group
	ID        string
	Plaintext []byte // the serialized waE2E Message, before padding
	SentAt    time.Time
}

// Store is everything the Signal layer needs for one account. All methods are safe for
// concurrent use; the Signal layer serializes work per remote address itself.
type Store interface {
	signalstore.SignalProtocol
	groupstore.SenderKey

	// Account returns the identity this store belongs to.
	Account() *Account

	// DoTxn runs fn in one transaction: every write made through the ctx passed to fn
	// commits together or not at all, and cached records roll back with it. Nested
	// calls join the outer transaction.
	DoTxn(ctx context.Context, fn func(ctx context.Context) error) error

	// GetIdentity returns the identity key recorded for a remote address (nil when none).
	GetIdentity(ctx context.Context, name string, deviceID uint32) (*identity.Key, error)
	// DeleteSessionsOf drops the sessions with every device of one remote user (name as in
	// jid.JID.SignalName), used when that user's identity changes.
	DeleteSessionsOf(ctx context.Context, name string) error
	// DeleteIdentitiesOf forgets the recorded identity keys of every device of one user.
	DeleteIdentitiesOf(ctx context.Context, name string) error

	// GeneratePreKeys makes count new one-time prekeys (ids continue where the last
	// batch ended, wrapping within 1..0xFFFFFF) and stores them as not yet uploaded.
	GeneratePreKeys(ctx context.Context, count int) ([]*record.PreKey, error)
	// UnuploadedPreKeys returns prekeys generated but not yet marked uploaded.
	UnuploadedPreKeys(ctx context.Context) ([]*record.PreKey, error)
	// MarkPreKeysUploaded marks these prekeys uploaded (the gateway accepted them).
	MarkPreKeysUploaded(ctx context.Context, ids []uint32) error
	// UploadedPreKeyCount counts uploaded prekeys that were not consumed yet.
	UploadedPreKeyCount(ctx context.Context) (int, error)

	// LatestSignedPreKey returns the newest signed prekey, or ErrNotFound.
	LatestSignedPreKey(ctx context.Context) (*SignedPreKeyInfo, error)
	// StoreSignedPreKeyAt stores a signed prekey with its creation time.
	StoreSignedPreKeyAt(ctx context.Context, rec *record.SignedPreKey, createdAt time.Time) error
	// PruneSignedPreKeys removes signed prekeys created before the cutoff, never the newest.
	PruneSignedPreKeys(ctx context.Context, before time.Time) error

	// SenderKeyHolders returns the devices that already hold our current sender key for
	// a group.
	SenderKeyHolders(ctx context.Context, group jid.JID) (map[jid.JID]struct{}, error)
	// AddSenderKeyHolders records that these devices received our current sender key.
	AddSenderKeyHolders(ctx context.Context, group jid.JID, devices []jid.JID) error
	// ResetSenderKey forgets our sender key for the group and who holds it, so the next
	// group message starts a new key (after a member left or was removed).
	ResetSenderKey(ctx context.Context, group jid.JID) error

	// PutSentMessage keeps a copy of what we sent, for retry receipts.
	PutSentMessage(ctx context.Context, msg *SentMessage) error
	// GetSentMessage returns a kept copy, or ErrNotFound.
	GetSentMessage(ctx context.Context, chat jid.JID, id string) (*SentMessage, error)
	// PruneSentMessages drops copies older than the cutoff.
	PruneSentMessages(ctx context.Context, before time.Time) error
}
