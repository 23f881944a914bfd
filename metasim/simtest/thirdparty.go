package simtest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
)

// Received is one message a third-party account decrypted.
type Received struct {
	Info    interop.MessageInfo
	Message *waE2E.Message // nil when it could not be decrypted
	EncType string         // pkmsg, msg or skmsg
}

// Other is a receipt, chat state or notification a third-party account got.
type Other struct {
	Kind string // "receipt", "chatstate" or "notification"
	Node stanza.Node
}

// ThirdParty is a raw third-party client built from the interop pieces (Account over
// a real WebSocket+Noise connection with the gateway's chain checked against the
// root key), standing in for a provider's user without the bridge.
type ThirdParty struct {
	Acc *interop.Account
	JID jid.JID

	received chan Received
	other    chan Other
	ready    chan struct{}
	once     sync.Once
	connects atomic.Int32
	cancel   context.CancelFunc
	done     chan struct{}
}

// ThirdPartyOptions set up a ThirdParty.
type ThirdPartyOptions struct {
	Network string // "whatsapp" (default) or "messenger"
	Number  string // E.164 digits of the account
	Store   store.Store
	// GatewayURL returns the gateway's current URL at every dial, so the client
	// follows a simulator that was restarted; default: this Env's.
	GatewayURL func() string
}

// StartThirdParty logs an account in to the env's gateway (registering its token with
// the fake provider), runs it until the test ends, and waits until its keys are on
// the gateway.
func (e *Env) StartThirdParty(tb testing.TB, o ThirdPartyOptions) *ThirdParty {
	tb.Helper()
	if o.Network == "" {
		o.Network = "whatsapp"
	}
	if o.GatewayURL == nil {
		o.GatewayURL = func() string { return e.Sim.GatewayURL(o.Network) }
	}
	root := e.Sim.RootPublicKey(o.Network)
	if root == nil {
		tb.Fatalf("network %s is not enabled", o.Network)
	}
	account := jid.Interop(IntegratorID, o.Number)
	token := "token-" + o.Number
	e.Provider.SetToken(account.String(), token)
	user, err := strconv.ParseUint(o.Number, 10, 64)
	if err != nil {
		tb.Fatalf("number %q: %v", o.Number, err)
	}
	product := waWa6.ClientPayload_INTEROP
	if o.Network == "messenger" {
		product = waWa6.ClientPayload_INTEROP_MSGR
	}
	payload := &waWa6.ClientPayload{
		Username: &user, Device: proto.Uint32(0), Product: &product,
		InteropData: &waWa6.ClientPayload_InteropData{
			AccountID: proto.Uint64(IntegratorID), Token: []byte(token), EnableReadReceipts: proto.Bool(true),
		},
	}
	dial := func(ctx context.Context) (interop.FrameConn, error) {
		url := o.GatewayURL()
		if url == "" {
			return nil, fmt.Errorf("the simulator is not listening")
		}
		return interop.SocketDialer(socket.DialOptions{URL: url, RootKey: root, Payload: payload})(ctx)
	}
	tp := &ThirdParty{JID: account, received: make(chan Received, 1000), other: make(chan Other, 1000), ready: make(chan struct{}), done: make(chan struct{})}
	tp.Acc, err = interop.NewAccount(interop.AccountConfig{
		Client: interop.Config{Dial: dial, IQTimeout: 10 * time.Second,
			Backoff: interop.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}},
		Store:   o.Store,
		Log:     zerolog.Nop(),
		Handler: tp.handle,
	})
	if err != nil {
		tb.Fatalf("failed to make the account: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tp.cancel = cancel
	go func() {
		defer close(tp.done)
		_ = tp.Acc.Run(ctx)
	}()
	tb.Cleanup(tp.Stop)
	select {
	case <-tp.ready:
	case <-time.After(15 * time.Second):
		tb.Fatalf("%s did not connect", account)
	}
	return tp
}

func (tp *ThirdParty) handle(ctx context.Context, evt interop.Event) {
	switch e := evt.(type) {
	case *interop.Connected:
		tp.connects.Add(1)
		if !e.New {
			tp.once.Do(func() { close(tp.ready) })
		}
	case *interop.PreKeysUploaded:
		tp.once.Do(func() { close(tp.ready) })
	case *interop.IncomingMessage:
		_, _ = tp.Acc.HandleMessage(ctx, e.Node, func(_ context.Context, m *interop.DecryptedMessage) error {
			select {
			case tp.received <- Received{Info: m.Info, Message: m.Message, EncType: m.EncType}:
			default:
			}
			return nil
		})
	case *interop.IncomingReceipt:
		tp.note("receipt", e.Node)
		_ = tp.Acc.Client().Ack(ctx, e.Node)
	case *interop.IncomingNotification:
		tp.note("notification", e.Node)
		_ = tp.Acc.Client().Ack(ctx, e.Node)
	case *interop.IncomingChatState:
		tp.note("chatstate", e.Node)
	}
}

func (tp *ThirdParty) note(kind string, n stanza.Node) {
	select {
	case tp.other <- Other{Kind: kind, Node: n}:
	default:
	}
}

// NextOther waits for the next receipt, chat state or notification matching match
// (nil matches all), skipping others.
func (tp *ThirdParty) NextOther(tb testing.TB, timeout time.Duration, match func(Other) bool) Other {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case o := <-tp.other:
			if match == nil || match(o) {
				return o
			}
		case <-deadline:
			tb.Fatalf("%s got no matching receipt, chat state or notification in %s", tp.JID, timeout)
			return Other{}
		}
	}
}

// Next waits for the next decrypted message.
func (tp *ThirdParty) Next(tb testing.TB, timeout time.Duration) Received {
	tb.Helper()
	select {
	case r := <-tp.received:
		return r
	case <-time.After(timeout):
		tb.Fatalf("%s received nothing in %s", tp.JID, timeout)
		return Received{}
	}
}

// WaitConnected waits until the account's connection is live again.
func (tp *ThirdParty) WaitConnected(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !tp.Acc.Client().IsConnected() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not reconnect in %s", tp.JID, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Connects counts the connections that got to <success>.
func (tp *ThirdParty) Connects() int { return int(tp.connects.Load()) }

// Stop ends the account's connection and waits for it.
func (tp *ThirdParty) Stop() {
	tp.cancel()
	<-tp.done
}
