package interop

import (
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Events of the account layer. They reach AccountConfig.Handler in order with the
// connection's events.

// SafetyNumberChanged: a peer's identity key changed (an identity notification, a
// fetched bundle or a prekey message with a new key). Tell the user that the safety
// number with User changed. Device is set when one device changed, zero when the
// gateway announced a change for the whole user.
type SafetyNumberChanged struct {
	User   jid.JID
	Device jid.JID
}

// UploadReason says why one-time prekeys were uploaded.
type UploadReason string

const (
	UploadNew     UploadReason = "new"     // <success new="1">: the account never uploaded keys
	UploadLow     UploadReason = "low"     // the gateway holds fewer than signal.MinPreKeys
	UploadRefused UploadReason = "refused" // a send was refused with 412
	UploadRepair  UploadReason = "repair"  // the gateway refused a rotation: it holds no keys or another identity's
)

// PreKeysUploaded: the gateway accepted Count one-time prekeys.
type PreKeysUploaded struct {
	Count  int
	Reason UploadReason
}

// SignedPreKeyRotated: the gateway accepted a new signed prekey.
type SignedPreKeyRotated struct {
	ID uint32
}

// RetryAnswered: a peer's device failed to decrypt one of our messages and sent a
// retry receipt. Err is nil when the message was sent again, otherwise why not (for
// example signal.ErrTooManyRetries, or store.ErrNotFound when the kept copy expired).
type RetryAnswered struct {
	Device    jid.JID
	Chat      jid.JID
	MessageID string
	Count     int
	Err       error
}

func (*SafetyNumberChanged) isEvent() {}
func (*PreKeysUploaded) isEvent()     {}
func (*SignedPreKeyRotated) isEvent() {}
func (*RetryAnswered) isEvent()       {}

var (
	_ Event = (*SafetyNumberChanged)(nil)
	_ Event = (*PreKeysUploaded)(nil)
	_ Event = (*SignedPreKeyRotated)(nil)
	_ Event = (*RetryAnswered)(nil)
	_ Event = (*stopDispatch)(nil)
)
