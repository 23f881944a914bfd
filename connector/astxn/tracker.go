// Package astxn closes the appservice's delivery window: mautrix-go's appservice
// answers a homeserver transaction with 200 as soon as its events are on an in-memory
// channel, so a crash after that answer would lose them (the homeserver never resends
// an acknowledged transaction). This package persists a transaction's events before
// the appservice sees it, tracks which of them were handled, replays the rest on start,
// and prunes old handled rows.
//
// What counts as handled: an event is handled once bridgev2 finished with it (the
// dispatch hook, appended after bridgev2's handlers, marks it when they returned),
// unless the connector claimed it (Claim) or Defer says it is the connector's: then the
// connector marks it (MarkHandled) after the gateway acked its stanza or the event was
// definitively refused. Events bridgev2 ignores (ghost and bot senders, non-portal
// rooms, state it handles itself) are thus handled as soon as it ignored them.
//
// Wiring, in the network connector: in Init (after bridgev2's Matrix connector's Init,
// before the appservice listens) Attach(mc.AS, mc.EventProcessor); in Start, after the
// bridge database is upgraded, go Replay(ctx, mc.AS) and go PruneLoop(ctx, time.Hour,
// 24*time.Hour); after the replay, CatchUp.Run finds the events the homeserver accepted
// but never sent in a transaction (catchup.go).
//
// It must not import the parent connector package, the interop protocol client or the
// simulator: it only knows the appservice, bridgev2's event processor and the bridge's
// own database.
package astxn

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
)

// Store is the persistence the tracker needs; *database.Database implements it.
type Store interface {
	PutTxn(ctx context.Context, txnID string, events []database.TxnEvent) error
	MarkHandled(ctx context.Context, eventID string) error
	Unhandled(ctx context.Context, limit int) ([]database.TxnEvent, error)
	PruneHandled(ctx context.Context, cutoff time.Time) (int64, error)
	HandledOf(ctx context.Context, eventIDs []string) (map[string]bool, error)
}

var _ Store = (*database.Database)(nil)

// DefaultTypes are the room event types bridgev2's Matrix connector has handlers for
// (bridgev2/matrix/connector.go, Init), plus encrypted events, which it decrypts and
// re-dispatches. Events of other types reach no bridge handler, so losing them is
// harmless and they are not persisted.
var DefaultTypes = []event.Type{
	event.EventMessage,
	event.EventSticker,
	event.EventUnstablePollStart,
	event.EventUnstablePollResponse,
	event.EventReaction,
	event.EventRedaction,
	event.EventEncrypted,
	event.StateMember,
	event.StatePowerLevels,
	event.StateRoomName,
	event.BeeperSendState,
	event.StateRoomAvatar,
	event.StateTopic,
	event.StateTombstone,
	event.StateBeeperDisappearingTimer,
	event.BeeperDeleteChat,
	event.BeeperBlockUser,
	event.BeeperAcceptMessageRequest,
}

// DefaultMaxBody bounds a transaction body. Synapse sends at most 50 PDUs and 100 EDUs
// per transaction, each at most 64 KiB, so 16 MiB leaves ample room.
const DefaultMaxBody = 16 << 20

// ErrAsyncHandlers: the event processor runs each handler in its own goroutine, so a
// handler appended after bridgev2's cannot tell when bridgev2 finished.
var ErrAsyncHandlers = errors.New("event processor runs handlers concurrently (appservice.async_transactions is on)")

// Tracker persists appservice transactions and records which of their events were
// handled. Safe for concurrent use.
type Tracker struct {
	store Store
	types map[string]struct{}

	// MaxBody bounds a transaction body; larger ones are refused with 413.
	MaxBody int64
	// Now is the clock of pruning and of MaxAge; tests replace it.
	Now func() time.Time
	// Defer, when set, says which events the dispatch hook leaves to the connector, as
	// if claimed before bridgev2 returned. With portal_event_buffer above 0 bridgev2
	// returns as soon as a portal event is queued, before the connector could Claim it:
	// deferring the types the connector acks (messages, reactions, redactions in portal
	// rooms) keeps them unhandled until the connector marks them.
	Defer func(ctx context.Context, evt *event.Event) bool
	// MaxAge, when above 0, bounds what Replay brings back: an event stored longer ago is
	// marked handled without being replayed. It also retires deferred events bridgev2
	// dropped before the connector saw them, which would otherwise come back on every
	// start.
	MaxAge time.Duration

	mu sync.Mutex
	// delivered holds the events this process passed to the appservice (from a
	// transaction or a replay) and has not yet seen handled: a homeserver re-sending
	// one of them, or a second replay, must not deliver it again.
	delivered map[string]struct{}
	// claimed holds the events the connector took over: it marks them itself once the
	// gateway acked (or refused) them, so the dispatch hook leaves them alone.
	claimed map[string]struct{}
	// recent holds the events handled lately (at most recentHandledMax), so that an
	// event marked handled between a reader's HandledOf and its takeFresh is still
	// recognised: MarkHandled drops it from delivered at that moment.
	recent     map[string]struct{}
	recentList []string
	// held, when not nil, is closed by the first Replay: until then new transactions
	// wait, so that events stored before a crash are processed before newer ones.
	held     chan struct{}
	holdOnce sync.Once
}

// HoldForReplay makes transactions wait until the first Replay finished (whether or
// not it succeeded), so the homeserver's new events are processed after the ones
// stored before the last stop. Call it before the appservice starts listening, and
// only if Replay will be called.
func (t *Tracker) HoldForReplay() {
	t.mu.Lock()
	if t.held == nil {
		t.held = make(chan struct{})
	}
	t.mu.Unlock()
}

func (t *Tracker) release() {
	t.mu.Lock()
	held := t.held
	t.mu.Unlock()
	if held != nil {
		t.holdOnce.Do(func() { close(held) })
	}
}

// waitReplay waits for the first replay when HoldForReplay was called; false means ctx
// ended first.
func (t *Tracker) waitReplay(ctx context.Context) bool {
	t.mu.Lock()
	held := t.held
	t.mu.Unlock()
	if held == nil {
		return true
	}
	select {
	case <-held:
		return true
	case <-ctx.Done():
		return false
	}
}

// New makes a tracker over store that persists events of the given types (DefaultTypes
// when none are given).
func New(store Store, types ...event.Type) *Tracker {
	if len(types) == 0 {
		types = DefaultTypes
	}
	t := &Tracker{
		store:     store,
		types:     make(map[string]struct{}, len(types)),
		MaxBody:   DefaultMaxBody,
		Now:       time.Now,
		delivered: make(map[string]struct{}),
		claimed:   make(map[string]struct{}),
		recent:    make(map[string]struct{}),
	}
	for _, typ := range types {
		t.types[typ.Type] = struct{}{}
	}
	return t
}

// trackedTypes lists the tracked event types, sorted.
func (t *Tracker) trackedTypes() []string {
	return slices.Sorted(maps.Keys(t.types))
}

func (t *Tracker) tracks(evtType string) bool {
	_, ok := t.types[evtType]
	return ok
}

// Claim says the connector took eventID over: the dispatch hook will not mark it
// handled, the connector must call MarkHandled once the gateway acked the stanza or the
// event was definitively refused. Call it when the connector starts handling the event.
func (t *Tracker) Claim(eventID string) {
	t.mu.Lock()
	t.claimed[eventID] = struct{}{}
	t.mu.Unlock()
}

// MarkHandled records that eventID was handled: it will not be replayed after a restart,
// and a homeserver re-sending it is not delivered again.
func (t *Tracker) MarkHandled(ctx context.Context, eventID string) error {
	if err := t.store.MarkHandled(ctx, eventID); err != nil {
		return fmt.Errorf("failed to mark %s handled: %w", eventID, err)
	}
	t.mu.Lock()
	delete(t.claimed, eventID)
	delete(t.delivered, eventID)
	t.rememberHandled(eventID)
	t.mu.Unlock()
	return nil
}

// recentHandledMax bounds the memory of recently handled events: the window it covers
// is one database round trip, in which far fewer events are handled.
const recentHandledMax = 4096

// rememberHandled records eventID as handled lately. The caller holds t.mu.
func (t *Tracker) rememberHandled(eventID string) {
	if _, ok := t.recent[eventID]; ok {
		return
	}
	if len(t.recentList) >= recentHandledMax {
		delete(t.recent, t.recentList[0])
		t.recentList = t.recentList[1:]
	}
	t.recent[eventID] = struct{}{}
	t.recentList = append(t.recentList, eventID)
}

// Hook appends, for every tracked type, a last handler to ep that marks the event
// handled once the handlers before it (bridgev2's) returned, unless the connector
// claimed it. Call it after bridgev2's Matrix connector registered its handlers (after
// its Init). It refuses an event processor that runs handlers concurrently.
//
// bridgev2's handler returns when QueueMatrixEvent returns: with portal_event_buffer 0
// that is after the portal (and so the connector) finished the event; with a buffer it
// is as soon as the event is queued to the portal, before the connector could claim it,
// so the bridge should run with portal_event_buffer 0 for the claim to take effect.
func (t *Tracker) Hook(ep *appservice.EventProcessor) error {
	if ep.ExecMode == appservice.AsyncHandlers {
		return ErrAsyncHandlers
	}
	for typ := range t.types {
		for _, class := range []event.TypeClass{event.MessageEventType, event.StateEventType} {
			ep.On(event.Type{Type: typ, Class: class}, t.afterDispatch)
		}
	}
	return nil
}

func (t *Tracker) afterDispatch(ctx context.Context, evt *event.Event) {
	eventID := evt.ID.String()
	if eventID == "" {
		return
	}
	t.mu.Lock()
	_, claimed := t.claimed[eventID]
	t.mu.Unlock()
	if claimed || (t.Defer != nil && t.Defer(ctx, evt)) {
		return
	}
	if err := t.MarkHandled(ctx, eventID); err != nil {
		// The event stays unhandled and is replayed on the next start; bridgev2's own
		// deduplication is the second line there.
		zerolog.Ctx(ctx).Err(err).Stringer("event_id", evt.ID).Msg("Failed to mark Matrix event handled")
	}
}

// PruneLoop deletes rows handled more than keep ago, now and then every interval, until
// ctx is done.
func (t *Tracker) PruneLoop(ctx context.Context, interval, keep time.Duration) {
	log := zerolog.Ctx(ctx)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if n, err := t.store.PruneHandled(ctx, t.Now().Add(-keep)); err != nil {
			log.Err(err).Msg("Failed to prune handled appservice events")
		} else if n > 0 {
			log.Debug().Int64("pruned", n).Msg("Pruned handled appservice events")
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Attach wires the tracker into an appservice and the event processor reading it, as
// the network connector's Init should (after bridgev2's Matrix connector registered its
// handlers, before the appservice listens): the persisting middleware, the hold until
// the first Replay, and the dispatch hook. The connector's Start must then call Replay
// (in a goroutine) and may run PruneLoop.
func (t *Tracker) Attach(as *appservice.AppService, ep *appservice.EventProcessor) error {
	if err := t.Hook(ep); err != nil {
		return err
	}
	as.Middleware = append(as.Middleware, t.Middleware(as))
	t.HoldForReplay()
	return nil
}
