package astxn

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/rs/zerolog"
	"go.mau.fi/util/exhttp"
	"go.mau.fi/util/exstrings"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
)

const txnPathPrefix = "/_matrix/app/v1/transactions/"

// txnEventHead is the part of a PDU the tracker reads; the body is stored as received.
type txnEventHead struct {
	ID     string `json:"event_id"`
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
	Sender string `json:"sender"`
}

// Middleware returns the HTTP middleware to append to as.Middleware. For an
// authenticated transaction PUT it stores the transaction's tracked events before the
// appservice sees it and answers 500 when storing fails, so the homeserver retries
// instead of getting a 200 for events only held in memory. Events this process already
// delivered, or that were handled, are taken out of the transaction before it is passed
// on, so a homeserver re-sending them (after a crash between storing and answering)
// does not bridge them twice. Everything else passes through untouched: an
// unauthenticated request is left for the appservice to refuse.
func (t *Tracker) Middleware(as *appservice.AppService) exhttp.Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			txnID, ok := transactionID(r)
			if !ok || !validServerToken(r, as.Registration) {
				next.ServeHTTP(w, r)
				return
			}
			log := as.Log.With().Str("component", "astxn").Str("transaction_id", txnID).Logger()
			t.serveTxn(w, r.WithContext(log.WithContext(r.Context())), next, txnID)
		})
	}
}

// transactionID returns the transaction ID of a transaction PUT. It splits the escaped
// path, as the appservice's router does, so an ID with an escaped slash is still seen.
func transactionID(r *http.Request) (string, bool) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), txnPathPrefix)
	if r.Method != http.MethodPut || !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	txnID, err := url.PathUnescape(rest)
	return txnID, err == nil
}

func validServerToken(r *http.Request, reg *appservice.Registration) bool {
	if reg == nil || reg.ServerToken == "" {
		return false
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && exstrings.ConstantTimeEqual(token, reg.ServerToken)
}

func (t *Tracker) serveTxn(w http.ResponseWriter, r *http.Request, next http.Handler, txnID string) {
	ctx := r.Context()
	log := zerolog.Ctx(ctx)
	if !t.waitReplay(ctx) {
		// The homeserver gave up waiting; it retries the transaction later.
		mautrix.MUnknown.WithMessage("Bridge is still replaying stored events").WithStatus(http.StatusServiceUnavailable).Write(w)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, t.MaxBody))
	_ = r.Body.Close()
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			mautrix.MTooLarge.WithMessage("Transaction too large").Write(w)
		} else {
			mautrix.MNotJSON.WithMessage("Failed to read transaction body").Write(w)
		}
		return
	}
	var txn struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &txn); err != nil {
		// Not a transaction the appservice can parse either: let it answer.
		passOn(w, r, next, body)
		return
	}
	var stored []database.TxnEvent
	var tracked []int // index in txn.Events of each stored event
	for i, raw := range txn.Events {
		var head txnEventHead
		if json.Unmarshal(raw, &head) != nil || head.ID == "" || !t.tracks(head.Type) {
			continue
		}
		stored = append(stored, database.TxnEvent{TxnID: txnID, EventID: head.ID, Body: raw})
		tracked = append(tracked, i)
	}
	if len(stored) == 0 {
		passOn(w, r, next, body)
		return
	}
	if err := t.store.PutTxn(ctx, txnID, stored); err != nil {
		log.Err(err).Int("events", len(stored)).Msg("Failed to persist appservice transaction, asking the homeserver to retry")
		mautrix.MUnknown.WithMessage("Failed to persist transaction").Write(w)
		return
	}
	ids := make([]string, len(stored))
	for i, evt := range stored {
		ids[i] = evt.EventID
	}
	handled, err := t.store.HandledOf(ctx, ids)
	if err != nil {
		log.Err(err).Msg("Failed to check stored appservice events, asking the homeserver to retry")
		mautrix.MUnknown.WithMessage("Failed to persist transaction").Write(w)
		return
	}

	fresh := t.takeFresh(ids, handled)
	keep := make([]bool, len(txn.Events))
	for i := range keep {
		keep[i] = true
	}
	dropped := 0
	kept := make(map[string]struct{}, len(fresh))
	for k, i := range tracked {
		_, isFresh := fresh[ids[k]]
		_, twice := kept[ids[k]] // the same event twice in one transaction
		if !isFresh || twice {
			keep[i] = false
			dropped++
			continue
		}
		kept[ids[k]] = struct{}{}
	}
	if dropped > 0 {
		log.Debug().Int("dropped", dropped).Msg("Dropping events already delivered or handled from retried transaction")
		body, err = withEvents(body, txn.Events, keep)
		if err != nil {
			t.forget(fresh)
			log.Err(err).Msg("Failed to rewrite appservice transaction")
			mautrix.MUnknown.WithMessage("Failed to rewrite transaction").Write(w)
			return
		}
	}
	rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	passOn(rec, r, next, body)
	if rec.status != http.StatusOK {
		// The appservice refused the transaction; the homeserver will retry it and the
		// events must then be delivered again.
		t.forget(fresh)
	}
}

// takeFresh returns the ids neither handled nor delivered by this process, and records
// them as delivered.
func (t *Tracker) takeFresh(ids []string, handled map[string]bool) map[string]struct{} {
	fresh := make(map[string]struct{}, len(ids))
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, evtID := range ids {
		if handled[evtID] {
			continue
		}
		if _, seen := t.delivered[evtID]; seen {
			continue
		}
		if _, done := t.recent[evtID]; done {
			continue
		}
		t.delivered[evtID] = struct{}{}
		fresh[evtID] = struct{}{}
	}
	return fresh
}

func (t *Tracker) forget(ids map[string]struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for evtID := range ids {
		delete(t.delivered, evtID)
	}
}

// withEvents rewrites the transaction body with only the kept events, leaving every
// other field (ephemeral events, device lists) as it was.
func withEvents(body []byte, events []json.RawMessage, keep []bool) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, err
	}
	kept := make([]json.RawMessage, 0, len(events))
	for i, raw := range events {
		if keep[i] {
			kept = append(kept, raw)
		}
	}
	encoded, err := json.Marshal(kept)
	if err != nil {
		return nil, err
	}
	fields["events"] = encoded
	return json.Marshal(fields)
}

func passOn(w http.ResponseWriter, r *http.Request, next http.Handler, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	next.ServeHTTP(w, r)
}

// statusWriter remembers the status the next handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}
