package astxn

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
)

// CursorStore keeps where the catch-up's /sync stopped; *database.Database
// implements it.
type CursorStore interface {
	ASCursor(ctx context.Context, name string) (string, error)
	SetASCursor(ctx context.Context, name, value string) error
}

var _ CursorStore = (*database.Database)(nil)

const (
	catchUpCursor = "catchup"
	// catchUpPageLimit is the events asked for per room and page.
	catchUpPageLimit = 100
	// catchUpMaxPages bounds the pages read back through one room's gap per look.
	catchUpMaxPages = 50
)

// CatchUp finds the Matrix events the homeserver accepted but never delivered in an
// appservice transaction, and bridges them.
//
// Synapse can strand a transaction for good: while it retries the transactions a
// stopped bridge missed, an event created as the retries end is stored in a new
// transaction that nothing sends until the bridge is next unreachable (its recoverer
// finds no transaction left and marks the bridge up, while the event's sender still
// saw it down). Nothing in the transactions tells the bridge, so it reads its rooms
// through the bot's /sync, from a cursor stored after every look: an event of a
// tracked type from someone other than the bridge's own users that the tracker never
// stored is stored now (so a crash cannot lose it either) and, once it is Grace old,
// handed to the appservice unless a transaction brought it meanwhile.
type CatchUp struct {
	Tracker *Tracker
	AS      *appservice.AppService
	Cursor  CursorStore
	// Interval is the time between looks; Grace how long an event may still be on its
	// way in a transaction before it counts as missed.
	Interval, Grace time.Duration
	// Ignore says whose events are not looked for: the bridge's ghosts and bot, whose
	// events bridgev2 ignores anyway.
	Ignore func(id.UserID) bool

	mu      sync.Mutex
	pending []missedEvent
}

type missedEvent struct {
	id   string
	body json.RawMessage
	due  time.Time
}

// cursorOnlyFilter asks for no room and nothing else: the answer is only a next_batch.
const cursorOnlyFilter = `{"room":{"rooms":[]},"presence":{"types":[]},"account_data":{"types":[]}}`

// syncFilter asks only for the timeline events of the tracked types.
func (c *CatchUp) syncFilter() string {
	types := c.Tracker.trackedTypes()
	none := map[string]any{"types": []string{}}
	filter := map[string]any{
		"presence":     none,
		"account_data": none,
		"room": map[string]any{
			"state":        map[string]any{"types": []string{}, "lazy_load_members": true},
			"ephemeral":    none,
			"account_data": none,
			"timeline":     map[string]any{"types": types, "limit": catchUpPageLimit},
		},
	}
	raw, _ := json.Marshal(filter)
	return string(raw)
}

// Run looks every Interval (and when a pending event falls due) until ctx ends.
func (c *CatchUp) Run(ctx context.Context) {
	log := zerolog.Ctx(ctx)
	for {
		if err := c.Look(ctx); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("Failed to look for Matrix events the homeserver did not deliver")
		}
		wait := c.Interval
		if due, ok := c.nextDue(); ok {
			wait = min(wait, max(time.Until(due), 0))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (c *CatchUp) nextDue() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return time.Time{}, false
	}
	due := c.pending[0].due
	for _, p := range c.pending[1:] {
		if p.due.Before(due) {
			due = p.due
		}
	}
	return due, true
}

// Look reads what happened in the bot's rooms since the cursor, stores the events no
// transaction brought, and hands over those that are due.
func (c *CatchUp) Look(ctx context.Context) error {
	since, err := c.Cursor.ASCursor(ctx, catchUpCursor)
	if err != nil {
		return err
	}
	filter := c.syncFilter()
	if since == "" {
		// The first look only needs a cursor: an initial sync of every room the bot is
		// in would be heavy for a bridge with many portals.
		filter = cursorOnlyFilter
	}
	var resp syncResponse
	if err := c.request(ctx, c.AS.BotClient().BuildURLWithQuery(mautrix.ClientURLPath{"v3", "sync"}, syncQuery(since, filter)), &resp); err != nil {
		return fmt.Errorf("failed to sync: %w", err)
	}
	if since != "" {
		found, err := c.collect(ctx, since, &resp)
		if err != nil {
			return err
		}
		if err := c.storeMissed(ctx, found); err != nil {
			return err
		}
	}
	// Stored first: a crash before this line looks at the same events again.
	if err := c.Cursor.SetASCursor(ctx, catchUpCursor, resp.NextBatch); err != nil {
		return err
	}
	return c.deliverDue(ctx)
}

func syncQuery(since, filter string) map[string]string {
	q := map[string]string{"timeout": "0", "filter": filter}
	if since != "" {
		q["since"] = since
	}
	return q
}

type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[id.RoomID]struct {
			Timeline struct {
				Events    []json.RawMessage `json:"events"`
				Limited   bool              `json:"limited"`
				PrevBatch string            `json:"prev_batch"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

type messagesResponse struct {
	Chunk []json.RawMessage `json:"chunk"`
	End   string            `json:"end"`
}

func (c *CatchUp) request(ctx context.Context, url string, into any) error {
	_, err := c.AS.BotClient().MakeFullRequest(ctx, mautrix.FullRequest{Method: http.MethodGet, URL: url, ResponseJSON: into})
	return err
}

// candidate is a timeline event the catch-up may have to bridge.
type candidate struct {
	head txnEventHead
	ts   time.Time
	body json.RawMessage
}

// collect gathers the tracked events of the sync response (reading back through a
// room's gap down to since when its timeline was cut) with their room IDs set.
func (c *CatchUp) collect(ctx context.Context, since string, resp *syncResponse) ([]candidate, error) {
	var out []candidate
	for roomID, room := range resp.Rooms.Join {
		events := room.Timeline.Events
		if room.Timeline.Limited && room.Timeline.PrevBatch != "" {
			older, err := c.readBack(ctx, roomID, room.Timeline.PrevBatch, since)
			if err != nil {
				return nil, err
			}
			events = append(older, events...)
		}
		for _, raw := range events {
			if cand, ok := c.candidate(roomID, raw); ok {
				out = append(out, cand)
			}
		}
	}
	return out, nil
}

// readBack pages /messages backwards from from to to, oldest first.
func (c *CatchUp) readBack(ctx context.Context, roomID id.RoomID, from, to string) ([]json.RawMessage, error) {
	filter, _ := json.Marshal(map[string]any{"types": c.Tracker.trackedTypes()})
	var newestFirst []json.RawMessage
	for range catchUpMaxPages {
		var page messagesResponse
		url := c.AS.BotClient().BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", roomID, "messages"}, map[string]string{
			"dir": "b", "from": from, "to": to, "limit": fmt.Sprint(catchUpPageLimit), "filter": string(filter),
		})
		if err := c.request(ctx, url, &page); err != nil {
			return nil, fmt.Errorf("failed to read back in %s: %w", roomID, err)
		}
		newestFirst = append(newestFirst, page.Chunk...)
		if len(page.Chunk) == 0 || page.End == "" || page.End == from {
			break
		}
		from = page.End
	}
	slices.Reverse(newestFirst)
	return newestFirst, nil
}

func (c *CatchUp) candidate(roomID id.RoomID, raw json.RawMessage) (candidate, bool) {
	var fields map[string]json.RawMessage
	var head txnEventHead
	var ts struct {
		OriginServerTS int64 `json:"origin_server_ts"`
	}
	if json.Unmarshal(raw, &fields) != nil || json.Unmarshal(raw, &head) != nil || json.Unmarshal(raw, &ts) != nil {
		return candidate{}, false
	}
	if head.ID == "" || !c.Tracker.tracks(head.Type) || (c.Ignore != nil && c.Ignore(id.UserID(head.Sender))) {
		return candidate{}, false
	}
	head.RoomID = roomID.String()
	fields["room_id"], _ = json.Marshal(head.RoomID)
	body, err := json.Marshal(fields)
	if err != nil {
		return candidate{}, false
	}
	return candidate{head: head, ts: time.UnixMilli(ts.OriginServerTS), body: body}, true
}

// storeMissed stores the candidates no transaction brought and queues them for
// delivery once they are Grace old. Events older than the tracker's MaxAge are left
// out, as the replay would retire them.
func (c *CatchUp) storeMissed(ctx context.Context, found []candidate) error {
	if len(found) == 0 {
		return nil
	}
	now := c.Tracker.Now()
	ids := make([]string, 0, len(found))
	for _, cand := range found {
		ids = append(ids, cand.head.ID)
	}
	known, err := c.Tracker.store.HandledOf(ctx, ids)
	if err != nil {
		return fmt.Errorf("failed to check events against the stored transactions: %w", err)
	}
	var missed []database.TxnEvent
	var queued []missedEvent
	for _, cand := range found {
		if _, ok := known[cand.head.ID]; ok {
			continue
		}
		if c.Tracker.MaxAge > 0 && now.Sub(cand.ts) > c.Tracker.MaxAge {
			continue
		}
		known[cand.head.ID] = false // the same event twice in one look
		missed = append(missed, database.TxnEvent{EventID: cand.head.ID, Body: cand.body})
		queued = append(queued, missedEvent{id: cand.head.ID, body: cand.body, due: cand.ts.Add(c.Grace)})
	}
	if len(missed) == 0 {
		return nil
	}
	txnID := fmt.Sprintf("interop-catchup-%d", now.UnixNano())
	for i := range missed {
		missed[i].TxnID = txnID
	}
	if err := c.Tracker.store.PutTxn(ctx, txnID, missed); err != nil {
		return err
	}
	c.mu.Lock()
	c.pending = append(c.pending, queued...)
	c.mu.Unlock()
	zerolog.Ctx(ctx).Debug().Int("events", len(missed)).Msg("Found Matrix events no appservice transaction brought yet")
	return nil
}

// deliverDue hands the pending events that are Grace old to the appservice, unless a
// transaction delivered them meanwhile. Those it cannot hand over stay stored and
// pending.
func (c *CatchUp) deliverDue(ctx context.Context) error {
	now := c.Tracker.Now()
	c.mu.Lock()
	var due []missedEvent
	c.pending = slices.DeleteFunc(c.pending, func(p missedEvent) bool {
		if p.due.After(now) {
			return false
		}
		due = append(due, p)
		return true
	})
	c.mu.Unlock()
	if len(due) == 0 {
		return nil
	}
	requeue := func() {
		c.mu.Lock()
		c.pending = append(c.pending, due...)
		c.mu.Unlock()
	}
	ids := make([]string, len(due))
	for i, p := range due {
		ids[i] = p.id
	}
	handled, err := c.Tracker.store.HandledOf(ctx, ids)
	if err != nil {
		requeue()
		return fmt.Errorf("failed to check missed events: %w", err)
	}
	fresh := c.Tracker.takeFresh(ids, handled)
	var events []json.RawMessage
	var delivered []string
	for _, p := range due {
		if _, ok := fresh[p.id]; ok {
			events = append(events, p.body)
			delivered = append(delivered, p.id)
		}
	}
	if len(events) == 0 {
		return nil
	}
	txnID := fmt.Sprintf("interop-catchup-%d", now.UnixNano())
	if err := inject(ctx, c.AS, txnID, events); err != nil {
		c.Tracker.forget(fresh)
		requeue()
		return err
	}
	zerolog.Ctx(ctx).Warn().Strs("event_ids", delivered).
		Msg("Bridged Matrix events the homeserver accepted but never delivered to the bridge")
	return nil
}
