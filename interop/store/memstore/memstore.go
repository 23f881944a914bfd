// Package memstore keeps one account's Signal state in memory: for tests, benchmarks
// and the simulator's in-memory mode. It implements store.Store with real
// transactions (DoTxn buffers writes and applies them on commit), so code tested
// against it behaves as it would on store/sqlstore.
//
// It imports only store, jid and libsignal; it must not import sqlstore or the Signal
// layer.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/util/keyhelper"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

var (
	_ store.Store = (*Store)(nil)
)

// ErrTxnDone is returned for a write through the ctx of a transaction that already
// committed or rolled back (a goroutine that outlived its DoTxn call).
var ErrTxnDone = errors.New("memstore: transaction already finished")

// serializer is libsignal's usual choice (protobuf messages, JSON records); the
// stored bytes never leave this process, so only self-consistency matters.
var serializer = serialize.NewProtoBufSerializer()

// NewAccount makes a fresh local identity: an identity key pair and a registration id
// in libsignal's recommended range 1..16380.
func NewAccount(j jid.JID) (*store.Account, error) {
	ikp, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		return nil, fmt.Errorf("failed to generate identity key pair: %w", err)
	}
	return &store.Account{
		JID:            j,
		RegistrationID: keyhelper.GenerateRegistrationID()%16380 + 1,
		IdentityKey:    ikp,
		CreatedAt:      time.Now(),
	}, nil
}

// address is a Signal address as a map key.
type address struct {
	name   string
	device uint32
}

type senderKeyID struct {
	group  string
	sender address
}

type holderKey struct {
	group  jid.JID
	device jid.JID
}

type sentKey struct {
	chat jid.JID
	id   string
}

// Prekey records are immutable, so rows hold them directly. They must not go through
// libsignal's record serialization: record.NewPreKeyFromBytes and
// NewSignedPreKeyFromBytes rebuild the public key from the first 32 bytes of its
// 33-byte serialized form (type byte included), so a round trip corrupts it.
type preKeyRow struct {
	rec      *record.PreKey
	uploaded bool
}

type signedPreKeyRow struct {
	rec       *record.SignedPreKey
	createdAt time.Time
}

// Store is the in-memory store.Store. Mutable libsignal records (sessions, sender
// keys) are kept serialized, so every load hands out a fresh object: libsignal
// mutates loaded records in place, and a failed or rolled-back operation must never
// reach what is stored.
type Store struct {
	acc *store.Account

	mu            sync.Mutex
	identities    table[address, []byte]
	sessions      table[address, []byte]
	preKeys       table[uint32, preKeyRow]
	lastPreKeyID  table[struct{}, uint32]
	signedPreKeys table[uint32, signedPreKeyRow]
	senderKeys    table[senderKeyID, []byte]
	holders       table[holderKey, struct{}]
	sent          table[sentKey, store.SentMessage]
}

// New makes an empty store for the account; acc must not be nil.
func New(acc *store.Account) store.Store {
	return &Store{
		acc:           acc,
		identities:    newTable[address, []byte](),
		sessions:      newTable[address, []byte](),
		preKeys:       newTable[uint32, preKeyRow](),
		lastPreKeyID:  newTable[struct{}, uint32](),
		signedPreKeys: newTable[uint32, signedPreKeyRow](),
		senderKeys:    newTable[senderKeyID, []byte](),
		holders:       newTable[holderKey, struct{}](),
		sent:          newTable[sentKey, store.SentMessage](),
	}
}

// Account returns the identity this store belongs to.
func (s *Store) Account() *store.Account { return s.acc }

// txnKey finds this store's open transaction in a ctx; keyed by store so that a
// transaction on one account never captures writes to another.
type txnKey struct{ s *Store }

// DoTxn runs fn with a ctx whose writes are buffered and applied all at once when fn
// returns nil, or dropped when it returns an error or panics. Reads through that ctx
// see the buffered writes; other callers see only committed state. Nested calls join
// the outer transaction (an error that the outer fn swallows does not undo the inner
// writes, as with one SQL transaction).
func (s *Store) DoTxn(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	if tx, _ := ctx.Value(txnKey{s}).(*txn); tx != nil {
		s.mu.Lock()
		done := tx.done
		s.mu.Unlock()
		if !done {
			return fn(ctx)
		}
	}
	tx := &txn{writes: make(map[any]any)}
	committed := false
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		tx.done = true
		if committed {
			for _, apply := range tx.apply {
				apply()
			}
		}
	}()
	if err = fn(context.WithValue(ctx, txnKey{s}, tx)); err != nil {
		return err
	}
	committed = true
	return nil
}

// begin locks the store and returns the ctx's open transaction (nil when none). The
// caller must unlock s.mu.
func (s *Store) begin(ctx context.Context) *txn {
	s.mu.Lock()
	tx, _ := ctx.Value(txnKey{s}).(*txn)
	return tx
}

// beginWrite is begin for writers: a finished transaction is an error, not a silent
// direct write that the caller believes to be part of it.
func (s *Store) beginWrite(ctx context.Context) (*txn, error) {
	tx := s.begin(ctx)
	if tx != nil && tx.done {
		s.mu.Unlock()
		return nil, ErrTxnDone
	}
	return tx, nil
}

// txn is the write set of one DoTxn call.
type txn struct {
	writes map[any]any // *table[K, V] → map[K]change[V]
	apply  []func()
	done   bool
}

type change[V any] struct {
	val     V
	deleted bool
}

// table is one keyed collection; all access happens under Store.mu.
type table[K comparable, V any] struct {
	rows map[K]V
}

func newTable[K comparable, V any]() table[K, V] {
	return table[K, V]{rows: make(map[K]V)}
}

// pending returns the transaction's buffered changes to t (nil when none and not
// create).
func pending[K comparable, V any](tx *txn, t *table[K, V], create bool) map[K]change[V] {
	if tx == nil || tx.done {
		return nil
	}
	if w, ok := tx.writes[t]; ok {
		return w.(map[K]change[V])
	}
	if !create {
		return nil
	}
	w := make(map[K]change[V])
	tx.writes[t] = w
	tx.apply = append(tx.apply, func() {
		for k, c := range w {
			if c.deleted {
				delete(t.rows, k)
			} else {
				t.rows[k] = c.val
			}
		}
	})
	return w
}

func (t *table[K, V]) get(tx *txn, k K) (V, bool) {
	if c, ok := pending(tx, t, false)[k]; ok {
		return c.val, !c.deleted
	}
	v, ok := t.rows[k]
	return v, ok
}

func (t *table[K, V]) put(tx *txn, k K, v V) {
	if w := pending(tx, t, true); w != nil {
		w[k] = change[V]{val: v}
		return
	}
	t.rows[k] = v
}

func (t *table[K, V]) del(tx *txn, k K) {
	if w := pending(tx, t, true); w != nil {
		w[k] = change[V]{deleted: true}
		return
	}
	delete(t.rows, k)
}

// keys lists the visible keys that match; callers modify the table only after.
func (t *table[K, V]) keys(tx *txn, match func(K, V) bool) []K {
	var out []K
	w := pending(tx, t, false)
	for k, v := range t.rows {
		if _, shadowed := w[k]; !shadowed && match(k, v) {
			out = append(out, k)
		}
	}
	for k, c := range w {
		if !c.deleted && match(k, c.val) {
			out = append(out, k)
		}
	}
	return out
}

func all[K, V any](K, V) bool { return true }
