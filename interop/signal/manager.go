// Package signal is the Signal protocol layer of PROTOCOL.md sections 3.3, 3.5, 5 and 6
// over go.mau.fi/libsignal: key uploads and rotation, 1:1 sessions, sender keys for
// groups, message padding, phash and the two sides of retry receipts.
//
// libsignal does no locking and panics on some hostile input; this package is the
// boundary that fixes both: work is serialized per remote user (1:1) and per group
// sender (sender keys), every call into libsignal runs under recover, and its errors
// are mapped to the sentinels below. Decryption runs in one store transaction with
// the caller's handling of the plaintext, so a message whose handling failed can be
// decrypted again.
//
// It imports store and jid, never a store implementation, the connection layer, the
// stanza codec or anything Matrix.
package signal

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/signalerror"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

// Errors. Failures from libsignal are mapped to one of these and keep libsignal's own
// error in the chain.
var (
	// ErrNoSession: no session with the device (fetch its bundle, or ask for a retry).
	ErrNoSession = errors.New("no Signal session with this device")
	// ErrDecrypt: no session state could authenticate the message (bad MAC, a
	// corrupted or forged ciphertext, or a session the sender no longer has).
	ErrDecrypt = errors.New("message failed to decrypt")
	// ErrDuplicate: the message key was already used (the message was decrypted before).
	ErrDuplicate = errors.New("message was already decrypted")
	// ErrMalformed: the ciphertext is not a Signal message of the given type.
	ErrMalformed = errors.New("malformed Signal message")
	// ErrUnknownType: the enc type is not pkmsg, msg or skmsg.
	ErrUnknownType = errors.New("unknown enc type")
	// ErrUnknownPreKey: a prekey message names a one-time or signed prekey we no
	// longer have (consumed or rotated away); the sender must start over (retry).
	ErrUnknownPreKey = errors.New("prekey message refers to an unknown prekey")
	// ErrBadPadding: the plaintext padding is not 1-16 equal bytes.
	ErrBadPadding = errors.New("invalid message padding")
	// ErrInvalidBundle: a prekey bundle is incomplete or its signature does not verify.
	ErrInvalidBundle = errors.New("invalid prekey bundle")
	// ErrUntrustedIdentity: a session's identity differs from the recorded one.
	ErrUntrustedIdentity = errors.New("untrusted identity key")
	// ErrNoSenderKey: we hold no sender key (or not this one) for the group sender.
	ErrNoSenderKey = errors.New("no sender key for this group sender")
	// ErrTooManyRetries: a retry receipt beyond MaxRetries.
	ErrTooManyRetries = errors.New("too many retries")
	// ErrRetryNeedsKeys: answering this retry needs a new session, and the receipt
	// carried no keys; fetch the device's bundle and call again with it.
	ErrRetryNeedsKeys = errors.New("retry needs a prekey bundle")
	// ErrLibraryPanic: libsignal panicked (on input it should have refused).
	ErrLibraryPanic = errors.New("libsignal panicked")
)

// Enc types of PROTOCOL.md section 3.3.
const (
	TypePreKeyMessage = "pkmsg"
	TypeMessage       = "msg"
	TypeSenderKey     = "skmsg"
)

// HandleFunc receives a decrypted, unpadded plaintext with the transaction's ctx. If
// it returns an error, the decryption is rolled back.
type HandleFunc func(ctx context.Context, plaintext []byte) error

// HandleError wraps an error returned by a HandleFunc, to tell it apart from a failed
// decryption (which warrants a retry receipt; a failed handling does not).
type HandleError struct{ Err error }

func (e *HandleError) Error() string { return "failed to handle decrypted message: " + e.Err.Error() }
func (e *HandleError) Unwrap() error { return e.Err }

// Manager runs the Signal protocol for one local account. It is safe for concurrent
// use. Its methods must not be called with a ctx that already carries a store
// transaction opened elsewhere: the per-user locks are released before such an outer
// transaction commits, which would let two callers advance the same ratchet. The one
// intended exception is a HandleFunc calling back with its own ctx (for example to
// process a sender key distribution the message carried): that work joins the
// decryption's transaction, and the lock for the sender is reentrant for it.
type Manager struct {
	st  store.Store
	log zerolog.Logger
	ser *serialize.Serializer

	locks *lockMap
	// keysMu serializes prekey generation and signed prekey rotation: stores give
	// read-committed isolation, so two concurrent batches could pick the same ids.
	keysMu sync.Mutex
}

// New makes a Manager over st; log is used when a call's ctx has no logger.
func New(st store.Store, log zerolog.Logger) *Manager {
	return &Manager{
		st:    st,
		log:   log,
		ser:   serialize.NewProtoBufSerializer(),
		locks: newLockMap(),
	}
}

// Store returns the store the Manager works on.
func (m *Manager) Store() store.Store { return m.st }

func (m *Manager) logger(ctx context.Context) *zerolog.Logger {
	if l := zerolog.Ctx(ctx); l.GetLevel() != zerolog.Disabled {
		return l
	}
	return &m.log
}

// own is our account's address.
func (m *Manager) own() jid.JID { return m.st.Account().JID }

func userLock(device jid.JID) string { return "u|" + device.SignalName() }

func groupLock(group, sender jid.JID) string {
	return "g|" + group.String() + "|" + sender.SignalAddress().String()
}

// guard runs fn and turns a panic into ErrLibraryPanic.
func guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrLibraryPanic, r)
		}
	}()
	return fn()
}

// mapErr wraps libsignal's errors in this package's sentinels; others pass through.
func mapErr(err error) error {
	var sentinel error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, signalerror.ErrOldCounter):
		sentinel = ErrDuplicate
	case errors.Is(err, signalerror.ErrNoSessionForUser):
		sentinel = ErrNoSession
	case errors.Is(err, signalerror.ErrNoValidSessions), errors.Is(err, signalerror.ErrBadMAC),
		errors.Is(err, signalerror.ErrUninitializedSession), errors.Is(err, signalerror.ErrWrongMessageVersion),
		errors.Is(err, signalerror.ErrTooFarIntoFuture), errors.Is(err, signalerror.ErrSenderKeyStateVerificationFailed):
		sentinel = ErrDecrypt
	case errors.Is(err, signalerror.ErrNoOneTimeKeyFound), errors.Is(err, signalerror.ErrNoSignedPreKey):
		sentinel = ErrUnknownPreKey
	case errors.Is(err, signalerror.ErrUntrustedIdentity):
		sentinel = ErrUntrustedIdentity
	case errors.Is(err, signalerror.ErrInvalidSignature):
		sentinel = ErrInvalidBundle
	case errors.Is(err, signalerror.ErrNoSenderKeyForUser), errors.Is(err, signalerror.ErrNoSenderKeyStateForID),
		errors.Is(err, signalerror.ErrNoSenderKeyStatesInRecord):
		sentinel = ErrNoSenderKey
	case errors.Is(err, signalerror.ErrOldMessageVersion), errors.Is(err, signalerror.ErrUnknownMessageVersion),
		errors.Is(err, signalerror.ErrIncompleteMessage):
		sentinel = ErrMalformed
	default:
		return err
	}
	if errors.Is(err, sentinel) {
		return err
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// lockMap holds one mutex per key while anyone uses it; unused keys are dropped, so
// the map does not grow with every peer ever seen.
type lockMap struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// heldLock marks in a ctx that its caller holds a key, making lock reentrant for
// calls made with that ctx (e.g. from a HandleFunc).
type heldLock struct {
	m   *lockMap
	key string
}

func newLockMap() *lockMap { return &lockMap{locks: make(map[string]*keyLock)} }

// lock acquires key unless ctx already holds it; it returns the ctx to use while
// holding it and the function that releases it.
func (l *lockMap) lock(ctx context.Context, key string) (context.Context, func()) {
	if ctx.Value(heldLock{l, key}) != nil {
		return ctx, func() {}
	}
	l.mu.Lock()
	kl := l.locks[key]
	if kl == nil {
		kl = &keyLock{}
		l.locks[key] = kl
	}
	kl.refs++
	l.mu.Unlock()
	kl.mu.Lock()
	return context.WithValue(ctx, heldLock{l, key}, true), func() {
		kl.mu.Unlock()
		l.mu.Lock()
		kl.refs--
		if kl.refs == 0 {
			delete(l.locks, key)
		}
		l.mu.Unlock()
	}
}

// size is the number of keys in use, for tests.
func (l *lockMap) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}
