package simuser

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

// device is one running simulated device: an interop.Account connected to the gateway
// in-process, and the handler that records what it receives.
type device struct {
	m   *Manager
	jid jid.JID
	acc *interop.Account
	log zerolog.Logger

	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	connected bool
	ready     chan struct{} // closed once connected with its keys on the gateway
	isReady   bool
	runErr    error
	// forceUpload: the store's identity was made just now, but the gateway may hold
	// keys of an older one (a reset, or memory stores after a restart); upload on the
	// first connection unless the gateway said it holds none.
	forceUpload bool
}

// runDevice makes and starts the device's Account over st, unless the device runs
// already.
func (m *Manager) runDevice(dev jid.JID, st store.Store, created bool) (*device, error) {
	d := &device{m: m, jid: dev, ready: make(chan struct{}), done: make(chan struct{}), forceUpload: created,
		log: m.log.With().Stringer("device", dev).Logger()}
	conn := m.cfg.Connection
	gw := m.gw
	conn.Dial = func(ctx context.Context) (interop.FrameConn, error) { return gw.ConnectDevice(ctx, dev) }
	acc, err := interop.NewAccount(interop.AccountConfig{
		Client:  conn,
		Store:   st,
		Handler: d.handle,
		Retry:   interop.RetryPolicy{MaxAttempts: m.cfg.SendAttempts},
		Now:     m.cfg.Now,
		Log:     d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to set up device %s: %w", dev, err)
	}
	d.acc = acc

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if running := m.devices[dev]; running != nil {
		m.mu.Unlock()
		return running, nil
	}
	m.devices[dev] = d
	ctx, cancel := context.WithCancel(d.log.WithContext(m.baseCtx))
	d.cancel = cancel
	m.mu.Unlock()

	go d.run(ctx)
	return d, nil
}

func (d *device) run(ctx context.Context) {
	defer close(d.done)
	err := d.acc.Run(ctx)
	if err != nil && ctx.Err() == nil {
		// Replaced or logged out: the device stays down until restarted.
		d.log.Warn().Err(err).Msg("Simulated device stopped")
	}
	d.mu.Lock()
	d.connected = false
	d.runErr = err
	d.mu.Unlock()
}

// halt disconnects the device and waits for its handler to finish.
func (d *device) halt() {
	d.cancel()
	<-d.done
}

// waitReady waits until the device connected with its keys on the gateway.
func (d *device) waitReady(ctx context.Context) error {
	select {
	case <-d.ready:
		return nil
	case <-d.done:
		d.mu.Lock()
		defer d.mu.Unlock()
		return fmt.Errorf("%w: %s stopped: %w", ErrNotReady, d.jid, d.runErr)
	case <-ctx.Done():
		return fmt.Errorf("%w: %s: %w", ErrNotReady, d.jid, ctx.Err())
	}
}

func (d *device) status() DeviceStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DeviceStatus{JID: d.jid, Connected: d.connected, Ready: d.isReady}
}

// handle receives the Account's events, one at a time, in order.
func (d *device) handle(ctx context.Context, evt interop.Event) {
	switch e := evt.(type) {
	case *interop.Connected:
		d.onConnected(ctx, e)
	case *interop.Disconnected:
		d.mu.Lock()
		d.connected = false
		d.mu.Unlock()
	case *interop.IncomingMessage:
		d.onMessage(ctx, e.Node)
	case *interop.IncomingReceipt:
		d.onReceipt(ctx, e.Node)
	case *interop.IncomingChatState:
		d.onChatState(ctx, e.Node)
	case *interop.IncomingNotification:
		d.onNotification(ctx, e)
	case *interop.SafetyNumberChanged:
		d.record(ctx, &Item{Kind: KindIdentity, Chat: e.User, Sender: e.Device})
	case *interop.RetryAnswered:
		if e.Err != nil {
			d.log.Debug().Err(e.Err).Str("message_id", e.MessageID).Msg("Could not answer a retry receipt")
		}
	}
}

func (d *device) onConnected(ctx context.Context, e *interop.Connected) {
	d.mu.Lock()
	force := d.forceUpload && !e.New
	d.mu.Unlock()
	if force {
		// The Account only counts prekeys on a known account; a new identity must
		// replace the old one on the gateway, which announces the change.
		if err := d.acc.UploadPreKeys(ctx); err != nil {
			d.log.Warn().Err(err).Msg("Failed to upload the keys of a new identity; trying again on the next connection")
			return
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forceUpload = false
	d.connected = true
	if !d.isReady {
		d.isReady = true
		close(d.ready)
	}
}

// Handling a stanza again after a failure waits retryInitial, doubling up to retryMax.
const (
	retryInitial = 50 * time.Millisecond
	retryMax     = 2 * time.Second
)

// persist runs fn until it succeeds, and reports whether it did. A failure (the
// database busy or briefly unreachable) is retried here, with backoff: left
// unacked, the stanza would come again only on the device's next connection, which
// may be never. It gives up only when the device stops, or when the connection is
// gone, since then the ack cannot reach the gateway and the gateway sends the stanza
// again on the next connection anyway. The device's later stanzas wait meanwhile,
// so they still come in order.
func (d *device) persist(ctx context.Context, what string, fn func() error) bool {
	backoff := interop.Backoff{Initial: retryInitial, Max: retryMax}
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			if attempt > 1 {
				d.log.Info().Str("stanza", what).Int("attempts", attempt).Msg("Handled a stanza after retrying")
			}
			return true
		}
		if ctx.Err() != nil || errors.Is(err, interop.ErrNotConnected) || errors.Is(err, interop.ErrDisconnected) {
			d.log.Debug().Err(err).Str("stanza", what).Msg("Failed to handle a stanza; the gateway sends it again on the next connection")
			return false
		}
		wait := backoff.Next()
		d.log.Warn().Err(err).Str("stanza", what).Int("attempt", attempt).Dur("retry_in", wait).Msg("Failed to handle a stanza, trying again")
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// record stores an item received outside a message's transaction, and wakes waiters.
func (d *device) record(ctx context.Context, it *Item) {
	it.User, it.Device = d.jid.ToUser(), d.jid
	if d.persist(ctx, string(it.Kind), func() error { return d.m.inbox.add(ctx, it) }) {
		d.m.inbox.notify()
	}
}

// onReceipt records a receipt for each message it names, then acks it.
func (d *device) onReceipt(ctx context.Context, node stanza.Node) {
	r, err := interop.ParseReceipt(node)
	if err != nil {
		d.log.Warn().Err(err).Msg("Malformed receipt")
	} else {
		chat, sender := r.Chat.ToUser(), r.Chat
		if r.Chat.IsGroup() {
			chat, sender = r.Chat, r.Participant
		}
		kind := string(r.Type)
		if r.Type == interop.ReceiptDelivered {
			kind = "delivered"
		}
		for _, id := range r.IDs {
			it := &Item{Kind: KindReceipt, ID: id, Chat: chat, Sender: sender, Timestamp: r.T, Data: ItemData{Receipt: kind}}
			it.User, it.Device = d.jid.ToUser(), d.jid
			if !d.persist(ctx, "receipt", func() error { return d.m.inbox.add(ctx, it) }) {
				// Not acked: it comes again on the next connection.
				d.m.inbox.notify()
				return
			}
		}
		d.m.inbox.notify()
	}
	if err := d.acc.Client().Ack(ctx, node); err != nil && !errors.Is(err, context.Canceled) {
		d.log.Debug().Err(err).Msg("Failed to ack a receipt")
	}
}

// onChatState records a chat state; they are never acked.
func (d *device) onChatState(ctx context.Context, node stanza.Node) {
	cs, err := interop.ParseChatState(node)
	if err != nil {
		d.log.Debug().Err(err).Msg("Malformed chatstate")
		return
	}
	it := &Item{Kind: KindChatState, Chat: cs.From, Sender: cs.From, Data: ItemData{ChatState: string(cs.State)}}
	if cs.From.IsGroup() {
		it.Sender = cs.Participant
	}
	d.record(ctx, it)
}

// onNotification records group changes and restrictions, and acks every
// notification the Account passed on.
func (d *device) onNotification(ctx context.Context, e *interop.IncomingNotification) {
	n := e.Node
	switch n.Attr("type") {
	case "w:gp2":
		d.onGroupNotification(ctx, e)
	case "account_sync":
		if r, ok := e.Info.(*interop.AccountRestricted); ok {
			d.record(ctx, &Item{Kind: KindRestriction, Data: ItemData{Restriction: &Restriction{Reason: r.Reason, Until: r.Until}}})
		}
	}
	if err := d.acc.Client().Ack(ctx, n); err != nil && !errors.Is(err, context.Canceled) {
		d.log.Debug().Err(err).Msg("Failed to ack a notification")
	}
}
