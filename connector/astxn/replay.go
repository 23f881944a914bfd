package astxn

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"
)

// Replay re-injects the stored, unhandled events into as's normal processing, in
// arrival order, as one synthetic transaction under a fresh ID handed straight to the
// appservice's router (not through the middleware: the events are stored already).
// Events this process already delivered are skipped, so a homeserver re-sending a
// transaction before the replay and the replay never deliver an event twice. It returns
// how many events it delivered.
//
// It releases transactions held by HoldForReplay when it returns, even on failure (the
// events it could not replay stay stored for the next start). The appservice blocks on
// a full event channel, so a backlog longer than the channel only drains once the event
// processor runs: call it from the network connector's Start, or in a goroutine.
func (t *Tracker) Replay(ctx context.Context, as *appservice.AppService) (int, error) {
	defer t.release()
	if as.Registration == nil || as.Router == nil {
		return 0, fmt.Errorf("appservice has no registration or router")
	}
	pending, err := t.store.Unhandled(ctx, 0)
	if err != nil {
		return 0, fmt.Errorf("failed to load unhandled events: %w", err)
	}
	ids := make([]string, 0, len(pending))
	expired := 0
	for _, evt := range pending {
		if t.MaxAge > 0 && t.Now().Sub(evt.ReceivedAt) > t.MaxAge {
			if err := t.MarkHandled(ctx, evt.EventID); err != nil {
				return 0, fmt.Errorf("failed to retire expired event: %w", err)
			}
			expired++
			continue
		}
		ids = append(ids, evt.EventID)
	}
	if expired > 0 {
		zerolog.Ctx(ctx).Warn().Int("events", expired).Dur("max_age", t.MaxAge).
			Msg("Not replaying appservice events stored too long ago")
	}
	fresh := t.takeFresh(ids, nil)
	events := make([]json.RawMessage, 0, len(fresh))
	for _, evt := range pending {
		if _, ok := fresh[evt.EventID]; ok {
			events = append(events, evt.Body)
		}
	}
	if len(events) == 0 {
		return 0, nil
	}
	txnID := fmt.Sprintf("interop-replay-%d", t.Now().UnixNano())
	if err := inject(ctx, as, txnID, events); err != nil {
		t.forget(fresh)
		return 0, err
	}
	zerolog.Ctx(ctx).Info().Str("transaction_id", txnID).Int("events", len(events)).
		Msg("Replayed appservice events stored before the last stop")
	return len(events), nil
}

// inject hands events to the appservice's router as one synthetic transaction, past
// the middleware (the caller stored them already).
func inject(ctx context.Context, as *appservice.AppService, txnID string, events []json.RawMessage) error {
	body, err := json.Marshal(map[string]any{"events": events})
	if err != nil {
		return fmt.Errorf("failed to encode transaction %s: %w", txnID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, txnPathPrefix+txnID, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("failed to build transaction %s: %w", txnID, err)
	}
	req.Header.Set("Authorization", "Bearer "+as.Registration.ServerToken)
	req.Header.Set("Content-Type", "application/json")
	rec := &recorder{header: make(http.Header), status: http.StatusOK}
	as.Router.ServeHTTP(rec, req)
	if rec.status != http.StatusOK {
		return fmt.Errorf("appservice refused transaction %s with status %d: %s", txnID, rec.status, rec.body.Bytes())
	}
	return nil
}

// recorder is the response writer of a replayed transaction.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(status int)      { r.status = status }
func (r *recorder) Write(p []byte) (int, error) { return r.body.Write(p) }
