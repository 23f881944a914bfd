package interop

import (
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// Event is something the Client reports to Config.Handler. The Handler is called from
// a single goroutine, one event at a time, in the order the events happened (stanzas in
// the order they were received), so the upper layer sees an account's history in order.
// A slow Handler delays later events but never the connection itself: iq answers and
// message acks are matched on the reading goroutine, so a Handler may call SendIQ and
// SendMessage and wait for them.
type Event interface{ isEvent() }

// Connected: the gateway accepted the login (<success>). Stanzas queued while the
// account was offline follow, then OfflineDone.
type Connected struct {
	// New is set when the account has never uploaded keys: upload them now.
	New        bool
	ServerTime time.Time
}

// Disconnected ends every connection attempt, whether or not it got to Connected,
// except when Run's context ends (then Run just returns).
type Disconnected struct {
	Err error
	// WillReconnect is false when Run is about to return.
	WillReconnect bool
	// RetryIn is the wait before the next attempt (0 = at once).
	RetryIn time.Duration
}

// Replaced: another connection took over the account (stream:error conflict). Run
// returns ErrReplaced right after; the login should not reconnect by itself.
type Replaced struct{}

// LoggedOut: the gateway revoked the login (stream:error 401). Run returns
// ErrLoggedOut; the user must sign in again.
type LoggedOut struct{}

// ConnectFailure: the gateway refused the login with <failure>. Err is an
// *errcode.Error: errors.Is(evt.Err, errcode.ErrUnauthorized) means bad credentials.
// 4xx failures (except 429) are terminal and Run returns; others are retried.
type ConnectFailure struct {
	Err error
}

// OfflineDone: every stanza queued while the account was offline has been delivered
// (<ib><offline count/></ib>).
type OfflineDone struct {
	Count int
}

// IncomingMessage is a <message>. Ack it with Client.Ack only after it was durably
// handled; unacked messages come again on the next connection.
type IncomingMessage struct {
	Node stanza.Node
}

// IncomingReceipt is a <receipt>; ack it like a message. ParseReceipt reads it.
type IncomingReceipt struct {
	Node stanza.Node
}

// IncomingNotification is a <notification>; ack it like a message. Info holds the
// typed content of the kinds this package knows (see ParseNotification), nil for
// others; Err is set when a known kind was malformed (the node must still be acked or
// it comes back forever).
type IncomingNotification struct {
	Node stanza.Node
	Info NotificationInfo
	Err  error
}

// IncomingChatState is a <chatstate>. It is never acked. ParseChatState reads it.
type IncomingChatState struct {
	Node stanza.Node
}

// IncomingIB is an <ib> other than the offline marker.
type IncomingIB struct {
	Node stanza.Node
}

// UnhandledStanza is any other stanza, passed on for forward compatibility.
type UnhandledStanza struct {
	Node stanza.Node
}

func (*Connected) isEvent()            {}
func (*Disconnected) isEvent()         {}
func (*Replaced) isEvent()             {}
func (*LoggedOut) isEvent()            {}
func (*ConnectFailure) isEvent()       {}
func (*OfflineDone) isEvent()          {}
func (*IncomingMessage) isEvent()      {}
func (*IncomingReceipt) isEvent()      {}
func (*IncomingNotification) isEvent() {}
func (*IncomingChatState) isEvent()    {}
func (*IncomingIB) isEvent()           {}
func (*UnhandledStanza) isEvent()      {}

var (
	_ Event = (*Connected)(nil)
	_ Event = (*Disconnected)(nil)
	_ Event = (*Replaced)(nil)
	_ Event = (*LoggedOut)(nil)
	_ Event = (*ConnectFailure)(nil)
	_ Event = (*OfflineDone)(nil)
	_ Event = (*IncomingMessage)(nil)
	_ Event = (*IncomingReceipt)(nil)
	_ Event = (*IncomingNotification)(nil)
	_ Event = (*IncomingChatState)(nil)
	_ Event = (*IncomingIB)(nil)
	_ Event = (*UnhandledStanza)(nil)
)
