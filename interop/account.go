package interop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
)

// The account layer (this file, outgoing.go, incoming.go, retry.go, keys.go,
// devices.go) joins the connection (Client) and the Signal layer (signal.Manager) for
// one third-party account. It is the only part of this package that imports
// interop/signal; the connection files never do.

// Retention of kept sent messages (PROTOCOL.md section 3.5: at least 24 h) and how
// often the Account prunes them, checks the signed prekey and forgets old retry
// counters.
const (
	SentMessageRetention = 24 * time.Hour
	sentMessageMargin    = time.Hour
	maintenanceInterval  = time.Hour
)

// ErrInsideDeliver refuses a send made from inside a DeliverFunc: deliver runs inside
// the decryption's store transaction and holds the sender's lock, so a send from
// there would write a stanza before that transaction commits (or deadlock). Queue the
// send and make it after deliver returned.
var ErrInsideDeliver = errors.New("cannot send from inside a DeliverFunc")

// ErrNoDevices: the recipient has no devices this account can encrypt for.
var ErrNoDevices = errors.New("recipient has no reachable devices")

// AccountConfig sets up an Account.
type AccountConfig struct {
	// Client configures the connection. Its Handler is replaced: set Handler below.
	Client Config
	// Store holds the account's Signal state (store/sqlstore in the bridge).
	Store store.Store
	// Handler receives the connection's events that the Account does not consume
	// (see Account) and the Account's own events (SafetyNumberChanged,
	// PreKeysUploaded, RetryAnswered), from one goroutine, in order.
	Handler func(ctx context.Context, evt Event)
	// Retry is the policy for refused sends (PROTOCOL.md section 10).
	Retry RetryPolicy
	// Now is the clock for kept messages and key rotation; nil means time.Now.
	Now func() time.Time
	// Log is used when a call's ctx carries no logger.
	Log zerolog.Logger
}

// RetryPolicy says how SendMessage and SendGroupMessage react to refusals. The zero
// value is the protocol's policy.
type RetryPolicy struct {
	// MaxAttempts bounds the sends of one message after 500/503 and transport errors
	// (0: until ctx ends). 429 is always retried until ctx ends: a rate-limited
	// message is never dropped.
	MaxAttempts int
	// MaxDeviceRefreshes bounds the 409 → refresh → send again rounds (default 3).
	MaxDeviceRefreshes int
	// MaxKeyUploads bounds the 412 → upload → send again rounds (default 2).
	MaxKeyUploads int
	// Backoff paces 500/503 and transport errors; default 1 s doubling to 5 min.
	Backoff Backoff
	// Sleep waits d or until ctx ends (then it returns ctx's error); tests inject it.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (p *RetryPolicy) withDefaults() {
	if p.MaxDeviceRefreshes <= 0 {
		p.MaxDeviceRefreshes = 3
	}
	if p.MaxKeyUploads <= 0 {
		p.MaxKeyUploads = 2
	}
	p.Backoff.withDefaults()
	if p.Sleep == nil {
		p.Sleep = sleepCtx
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// Account is one third-party account speaking the protocol: its connection (Client)
// and its Signal state (signal.Manager). The bridge makes one per login.
//
// Run keeps the connection and handles, by itself, what belongs to the protocol
// rather than to the user: key uploads and refills (on Connected, on the prekey
// notification, on a 412), signed prekey rotation, identity and device notifications,
// retry receipts, and pruning of kept sent messages. It acks those stanzas itself and
// does not pass them on. Connected reaches the Handler after the key check ran, so
// the offline messages that follow find the keys in place. Everything else goes to AccountConfig.Handler: for each
// IncomingMessage call HandleMessage; other receipts and notifications are the
// Handler's to handle and Ack.
//
// All work that advances a Signal ratchet (sending, decrypting, answering retries,
// starting sessions) is serialized per remote user by the Account and runs in one
// store transaction per step. While an Account runs, use its Manager only through it.
type Account struct {
	client *Client
	mgr    *signal.Manager
	st     store.Store
	own    jid.JID
	retry  RetryPolicy
	now    func() time.Time
	log    zerolog.Logger

	handler func(ctx context.Context, evt Event)
	events  *eventQueue
	running atomic.Bool

	locks   *keyLocks
	devices *deviceCache
	retries *retryCounter
	keys    keyState
	groups  groupGenerations
}

// NewAccount makes an Account over cfg.Store; nothing happens until Run.
func NewAccount(cfg AccountConfig) (*Account, error) {
	if cfg.Store == nil {
		return nil, errors.New("interop: AccountConfig.Store is required")
	}
	acc := cfg.Store.Account()
	if acc == nil || acc.JID.IsEmpty() {
		return nil, errors.New("interop: the store has no account")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Retry.withDefaults()
	a := &Account{
		mgr:     signal.New(cfg.Store, cfg.Log),
		st:      cfg.Store,
		own:     acc.JID,
		retry:   cfg.Retry,
		now:     cfg.Now,
		log:     cfg.Log,
		handler: cfg.Handler,
		events:  newEventQueue(),
		locks:   newKeyLocks(),
		devices: newDeviceCache(),
		retries: newRetryCounter(),
	}
	clientCfg := cfg.Client
	clientCfg.Handler = a.onClientEvent
	a.client = NewClient(clientCfg)
	return a, nil
}

// Client is the account's connection, for the request helpers (receipts, chat
// states, contacts, media_conn, blocklist) and for acking stanzas the Handler handled.
func (a *Account) Client() *Client { return a.client }

// Signal is the account's Signal layer.
func (a *Account) Signal() *signal.Manager { return a.mgr }

// JID is the account's own address.
func (a *Account) JID() jid.JID { return a.own }

func (a *Account) logger(ctx context.Context) *zerolog.Logger {
	if l := zerolog.Ctx(ctx); l.GetLevel() != zerolog.Disabled {
		return l
	}
	return &a.log
}

// stopDispatch marks the end of one Run's events in the queue.
type stopDispatch struct{ run *int }

func (*stopDispatch) isEvent() {}

// Run connects and stays connected like Client.Run, and returns what it returns. It
// returns only after the last Handler call has returned.
func (a *Account) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer a.running.Store(false)

	marker := &stopDispatch{run: new(int)}
	var wg sync.WaitGroup
	wg.Go(func() { a.dispatch(ctx, marker) })
	maintCtx, stopMaint := context.WithCancel(ctx)
	wg.Go(func() { a.maintenanceLoop(maintCtx) })

	err := a.client.Run(ctx)
	stopMaint()
	a.events.push(marker)
	wg.Wait()
	return err
}

// onClientEvent runs on the Client's dispatcher; it only queues, so that the
// Account's own events (from senders' goroutines) reach the Handler in one order.
func (a *Account) onClientEvent(_ context.Context, evt Event) { a.events.push(evt) }

// emit queues an Account event for the Handler.
func (a *Account) emit(evt Event) { a.events.push(evt) }

func (a *Account) dispatch(ctx context.Context, marker *stopDispatch) {
	for {
		evt, ok := a.events.pop(ctx)
		if !ok {
			return
		}
		if stop, isStop := evt.(*stopDispatch); isStop {
			if stop == marker {
				return
			}
			continue // left over from an earlier Run that ended with its ctx
		}
		if a.consume(ctx, evt) {
			continue
		}
		if a.handler != nil {
			a.handler(ctx, evt)
		}
	}
}

// consume handles the protocol's own events; true when the Handler must not see it.
func (a *Account) consume(ctx context.Context, evt Event) bool {
	log := a.logger(ctx)
	switch e := evt.(type) {
	case *Connected:
		if err := a.maintainKeys(ctx, e.New); err != nil {
			log.Warn().Err(err).Msg("Key maintenance after connecting failed")
		}
	case *IncomingNotification:
		return a.handleNotification(ctx, e)
	case *IncomingReceipt:
		if e.Node.Attr("type") != string(ReceiptRetry) {
			return false
		}
		if err := a.HandleRetryReceipt(ctx, e.Node); err != nil {
			log.Warn().Err(err).Str("message_id", e.Node.Attr("id")).
				Msg("Failed to answer a retry receipt; it comes again after reconnecting")
		}
		return true
	}
	return false
}

// handleNotification handles key, identity and device notifications and acks them.
// Group changes pass on to the handler (which acks them), after a member left or was
// removed has made this account start a new sender key for its next group message
// (PROTOCOL.md section 6).
func (a *Account) handleNotification(ctx context.Context, e *IncomingNotification) bool {
	log := a.logger(ctx)
	typ := e.Node.Attr("type")
	if gc, ok := e.Info.(*GroupChange); ok && len(gc.Left()) > 0 {
		if err := a.ResetGroupSenderKey(ctx, gc.Group); err != nil {
			log.Warn().Err(err).Stringer("group", gc.Group).Msg("Failed to start a new sender key after a member left")
		}
	}
	if typ != "encrypt" && typ != "devices" {
		return false
	}
	if e.Err != nil {
		// Malformed: acked anyway, or it would come back forever.
		log.Warn().Err(e.Err).Str("notification_type", typ).Msg("Malformed notification")
	}
	var err error
	switch info := e.Info.(type) {
	case *PreKeysLow:
		if info.Count < signal.MinPreKeys {
			err = a.uploadPreKeys(ctx, UploadLow)
		}
	case *IdentityChanged:
		err = a.handleIdentityChanged(ctx, info.User)
	case *DevicesChanged:
		a.devices.invalidate(info.User)
	}
	if err != nil {
		// Not acked: the gateway sends it again on the next connection.
		log.Warn().Err(err).Str("notification_type", typ).Msg("Failed to handle notification")
		return true
	}
	if err := a.client.Ack(ctx, e.Node); err != nil {
		log.Warn().Err(err).Msg("Failed to ack notification")
	}
	return true
}

func (a *Account) handleIdentityChanged(ctx context.Context, user jid.JID) error {
	ctx, unlock := a.locks.lock(ctx, userKey(user))
	defer unlock()
	if err := a.mgr.HandleIdentityChange(ctx, user); err != nil {
		return fmt.Errorf("failed to handle identity change: %w", err)
	}
	a.devices.invalidate(user)
	a.emit(&SafetyNumberChanged{User: user.ToUser()})
	return nil
}

// maintenanceLoop prunes kept sent messages and old retry counters, and rotates the
// signed prekey when due, once now and then every maintenanceInterval.
func (a *Account) maintenanceLoop(ctx context.Context) {
	ticker := time.NewTicker(maintenanceInterval)
	defer ticker.Stop()
	for {
		a.maintain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (a *Account) maintain(ctx context.Context) {
	log := a.logger(ctx)
	now := a.now()
	if err := a.PruneSentMessages(ctx, now); err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Msg("Failed to prune kept sent messages")
	}
	a.retries.prune(now.Add(-SentMessageRetention))
	if a.client.IsConnected() {
		if err := a.rotateSignedPreKey(ctx); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("Failed to rotate the signed prekey")
		}
	}
}

// PruneSentMessages drops kept copies of sent messages older than the retention
// (24 h plus a margin); Run calls it every hour.
func (a *Account) PruneSentMessages(ctx context.Context, now time.Time) error {
	if err := a.st.PruneSentMessages(ctx, now.Add(-SentMessageRetention-sentMessageMargin)); err != nil {
		return fmt.Errorf("failed to prune sent messages: %w", err)
	}
	return nil
}

// keyLocks serializes ratchet work per remote user (and per own group sender key)
// across whole store transactions. The signal package locks only around its own
// calls; the Account's transactions span several calls (encrypt + keep a copy), so
// it must hold its lock until the outermost transaction committed.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

type heldKey struct {
	l   *keyLocks
	key string
}

func newKeyLocks() *keyLocks { return &keyLocks{locks: make(map[string]*keyLock)} }

func userKey(u jid.JID) string  { return "u|" + u.SignalName() }
func groupKey(g jid.JID) string { return "g|" + g.String() }
func usersKeys(devices []jid.JID) []string {
	keys := make([]string, 0, len(devices))
	for _, d := range devices {
		keys = append(keys, userKey(d))
	}
	return keys
}

// lock takes keys in sorted order (so two callers taking several never deadlock),
// skipping those ctx already holds. It returns the ctx marking them held and the
// function that releases them.
func (l *keyLocks) lock(ctx context.Context, keys ...string) (context.Context, func()) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var taken []*keyLock
	var names []string
	for _, k := range keys {
		if ctx.Value(heldKey{l, k}) != nil {
			continue
		}
		l.mu.Lock()
		kl := l.locks[k]
		if kl == nil {
			kl = &keyLock{}
			l.locks[k] = kl
		}
		kl.refs++
		l.mu.Unlock()
		kl.mu.Lock()
		ctx = context.WithValue(ctx, heldKey{l, k}, true)
		taken = append(taken, kl)
		names = append(names, k)
	}
	return ctx, func() {
		for i := len(taken) - 1; i >= 0; i-- {
			taken[i].mu.Unlock()
			l.mu.Lock()
			taken[i].refs--
			if taken[i].refs == 0 {
				delete(l.locks, names[i])
			}
			l.mu.Unlock()
		}
	}
}

// size is the number of keys in use, for tests.
func (l *keyLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}

// inDeliverKey marks a ctx handed to a DeliverFunc.
type inDeliverKey struct{ a *Account }

func (a *Account) insideDeliver(ctx context.Context) bool {
	return ctx.Value(inDeliverKey{a}) != nil
}

// groupGenerations counts sender key resets per group, so that a distribution
// acked after a reset is not recorded as holding the new key.
type groupGenerations struct {
	mu  sync.Mutex
	gen map[jid.JID]uint64
}

func (g *groupGenerations) current(group jid.JID) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen[group]
}

func (g *groupGenerations) bump(group jid.JID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gen == nil {
		g.gen = make(map[jid.JID]uint64)
	}
	g.gen[group]++
}
