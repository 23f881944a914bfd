package interop

import (
	"errors"
	"strconv"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
)

// Errors of the connection layer. Refusals by the gateway are *errcode.Error values
// instead; branch on those with errors.Is(err, errcode.ErrRateLimited) and friends.
var (
	// ErrNotConnected: there was no live connection, so nothing was sent.
	ErrNotConnected = errors.New("not connected to the gateway")
	// ErrDisconnected: the connection dropped after the stanza was sent and before
	// its answer arrived; the gateway may or may not have acted on it.
	ErrDisconnected = errors.New("connection dropped before the answer arrived")
	// ErrIQTimeout: an iq got no answer within Config.IQTimeout. The connection is
	// treated as dead and dropped (PROTOCOL.md section 3.1).
	ErrIQTimeout = errors.New("no answer to the iq in time")
	// ErrAckTimeout: a sent message got no ack within Config.IQTimeout; the
	// connection is dropped like for an iq.
	ErrAckTimeout = errors.New("no ack for the message in time")
	// ErrAnswerPending: a stanza with the same id is still waiting for its answer
	// (a retry receipt can come back before the original message's ack).
	ErrAnswerPending = errors.New("a stanza with this id still waits for its answer")
	// ErrIdleTimeout: no frame at all arrived within Config.IdleTimeout.
	ErrIdleTimeout = errors.New("no frame from the gateway in time")
	// ErrReplaced: another connection for the account took over (stream:error
	// conflict). Run stops; the client must not fight for the account.
	ErrReplaced = errors.New("another connection replaced this one")
	// ErrLoggedOut: the gateway logged the account out (stream:error 401).
	ErrLoggedOut = errors.New("account was logged out")
	// ErrAlreadyRunning: Run was called while another Run of the same Client runs.
	ErrAlreadyRunning = errors.New("client is already running")
	// ErrUnexpectedStanza: the gateway sent something the protocol does not allow
	// at that point, e.g. a message before <success>.
	ErrUnexpectedStanza = errors.New("unexpected stanza from the gateway")
)

// StreamError is a <stream:error> from the gateway. It unwraps to the *errcode.Error
// of its code, so errors.Is(err, errcode.ErrReconnectNeeded) holds for a 515.
type StreamError struct {
	Code int
	// Conflict is the type of a <conflict> child ("replaced"), empty without one.
	Conflict string
}

func (e *StreamError) Error() string {
	if e.Conflict != "" {
		return "stream error: conflict (" + e.Conflict + ")"
	}
	return "stream error " + strconv.Itoa(e.Code)
}

// Unwrap gives the protocol error of the code, or nil when there is none.
func (e *StreamError) Unwrap() error {
	if e.Code == 0 {
		return nil
	}
	return errcode.New(e.Code)
}
