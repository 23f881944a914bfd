package astxn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"go.mau.fi/util/exhttp"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

const hsToken = "hs-token-for-tests"

func openDB(t testing.TB, raw *dbutil.Database) *database.Database {
	t.Helper()
	d := database.New(raw, zerolog.New(zerolog.NewTestWriter(t)))
	if err := d.Upgrade(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func newAS() *appservice.AppService {
	as := appservice.Create()
	as.Registration = &appservice.Registration{ID: "metainterop", ServerToken: hsToken, AppToken: "as-token", EphemeralEvents: true}
	return as
}

// serve runs as behind the tracker's middleware, as AppService.Start would, with
// before (when not nil) between the middleware and the appservice's router.
func serve(t *testing.T, tr *Tracker, as *appservice.AppService, before func()) *httptest.Server {
	t.Helper()
	inner := http.Handler(as.Router)
	if before != nil {
		inner = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			before()
			as.Router.ServeHTTP(w, r)
		})
	}
	as.Middleware = append(as.Middleware, tr.Middleware(as))
	srv := httptest.NewServer(exhttp.ApplyMiddleware(inner, as.Middleware...))
	t.Cleanup(srv.Close)
	return srv
}

func pdu(evtID, evtType string) json.RawMessage {
	evt := map[string]any{
		"event_id": evtID, "type": evtType, "room_id": "!portal:hs.test", "sender": "@alice:hs.test",
		"origin_server_ts": 1700000000000, "content": map[string]any{"msgtype": "m.text", "body": "hello"},
	}
	if evtType == event.StateMember.Type {
		evt["state_key"] = "@alice:hs.test"
		evt["content"] = map[string]any{"membership": "join"}
	}
	raw, _ := json.Marshal(evt)
	return raw
}

func typing() json.RawMessage {
	return json.RawMessage(`{"type":"m.typing","room_id":"!portal:hs.test","content":{"user_ids":["@alice:hs.test"]}}`)
}

func txnBody(events []json.RawMessage, ephemeral ...json.RawMessage) []byte {
	txn := map[string]any{"events": events}
	if len(ephemeral) > 0 {
		txn["ephemeral"] = ephemeral
	}
	body, _ := json.Marshal(txn)
	return body
}

func put(t *testing.T, srv *httptest.Server, token, txnID string, body []byte) (int, string) {
	t.Helper()
	// Errors, not Fatal: put also runs on goroutines of its own.
	req, err := http.NewRequest(http.MethodPut, srv.URL+txnPathPrefix+txnID, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

// drain returns the IDs (or types, for events without one) the appservice put on its
// event channel so far.
func drain(as *appservice.AppService) []string {
	var out []string
	for {
		select {
		case evt := <-as.Events:
			if evt.ID != "" {
				out = append(out, evt.ID.String())
			} else {
				out = append(out, evt.Type.Type)
			}
		default:
			return out
		}
	}
}

func unhandledIDs(t *testing.T, store Store) []string {
	t.Helper()
	evts, err := store.Unhandled(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(evts))
	for i, evt := range evts {
		out[i] = evt.EventID
	}
	return out
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// TestPersistedBeforeAnswer: the events are in the database when the appservice first
// sees the transaction, so they are there before the homeserver gets its 200; typing
// notifications and untracked types are delivered but not stored.
func TestPersistedBeforeAnswer(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		db := openDB(t, raw)
		tr := New(db)
		as := newAS()
		var seenByAS []string
		srv := serve(t, tr, as, func() { seenByAS = unhandledIDs(t, db) })

		body := txnBody([]json.RawMessage{pdu("$m1", "m.room.message"), pdu("$c1", "m.room.create"),
			pdu("$j1", "m.room.member"), pdu("$r1", "m.reaction")}, typing())
		if status, resp := put(t, srv, hsToken, "txn1", body); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, resp)
		}
		equal(t, "stored when the appservice got the transaction", seenByAS, []string{"$m1", "$j1", "$r1"})
		equal(t, "delivered", drain(as), []string{"m.typing", "$m1", "$c1", "$j1", "$r1"})

		// The router unescapes the transaction ID, so an escaped slash must not let a
		// transaction slip past unstored.
		body = txnBody([]json.RawMessage{pdu("$m2", "m.room.message")})
		if status, resp := put(t, srv, hsToken, "a%2Fb", body); status != http.StatusOK {
			t.Fatalf("escaped ID: status %d: %s", status, resp)
		}
		equal(t, "stored when the appservice got the escaped ID", seenByAS, []string{"$m1", "$j1", "$r1", "$m2"})
		equal(t, "delivered with escaped ID", drain(as), []string{"$m2"})
	})
}

// failingStore fails the chosen operations and otherwise counts calls.
type failingStore struct {
	Store
	failPut, failLookup bool
	puts                int
}

var errBroken = errors.New("database is down")

func (f *failingStore) PutTxn(ctx context.Context, txnID string, events []database.TxnEvent) error {
	f.puts++
	if f.failPut {
		return errBroken
	}
	return f.Store.PutTxn(ctx, txnID, events)
}

func (f *failingStore) HandledOf(ctx context.Context, ids []string) (map[string]bool, error) {
	if f.failLookup {
		return nil, errBroken
	}
	return f.Store.HandledOf(ctx, ids)
}

// TestStoreFailureAsksForRetry: if the events cannot be stored the homeserver gets a
// 500 (and retries) and the appservice never saw them; the retry, once the database is
// back, delivers them.
func TestStoreFailureAsksForRetry(t *testing.T) {
	for _, tc := range []struct {
		name                string
		failPut, failLookup bool
	}{
		{"put fails", true, false},
		{"lookup fails", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
				store := &failingStore{Store: openDB(t, raw), failPut: tc.failPut, failLookup: tc.failLookup}
				as := newAS()
				srv := serve(t, New(store), as, nil)
				body := txnBody([]json.RawMessage{pdu("$m1", "m.room.message")})
				if status, _ := put(t, srv, hsToken, "txn1", body); status != http.StatusInternalServerError {
					t.Fatalf("status %d, want 500", status)
				}
				equal(t, "delivered after failure", drain(as), nil)

				store.failPut, store.failLookup = false, false
				if status, resp := put(t, srv, hsToken, "txn1", body); status != http.StatusOK {
					t.Fatalf("retry: status %d: %s", status, resp)
				}
				equal(t, "delivered on retry", drain(as), []string{"$m1"})
				equal(t, "stored", unhandledIDs(t, store), []string{"$m1"})
			})
		})
	}
}

// TestPassThrough: requests the middleware must not touch reach the appservice as they
// were; the store fails every call, so touching them would show as a 500.
func TestPassThrough(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		store := &failingStore{Store: openDB(t, raw), failPut: true, failLookup: true}
		as := newAS()
		srv := serve(t, New(store), as, nil)
		body := txnBody([]json.RawMessage{pdu("$m1", "m.room.message")})
		for _, tc := range []struct {
			name, token, txnID string
			body               []byte
			want               int
		}{
			{"no token", "", "txn1", body, http.StatusUnauthorized},
			{"wrong token", "not-the-hs-token", "txn1", body, http.StatusUnauthorized},
			{"as token instead of hs token", "as-token", "txn1", body, http.StatusUnauthorized},
			{"not json", hsToken, "txn2", []byte("{not json"), http.StatusBadRequest},
			{"no tracked events", hsToken, "txn3", txnBody([]json.RawMessage{pdu("$c1", "m.room.create")}, typing()), http.StatusOK},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if status, resp := put(t, srv, tc.token, tc.txnID, tc.body); status != tc.want {
					t.Errorf("status %d, want %d: %s", status, tc.want, resp)
				}
			})
		}
		if store.puts != 0 {
			t.Errorf("store called %d times", store.puts)
		}
		equal(t, "delivered", drain(as), []string{"m.typing", "$c1"})

		resp, err := srv.Client().Get(srv.URL + "/_matrix/mau/live")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("other route: status %d", resp.StatusCode)
		}
	})
}

// TestTooLarge: an oversized transaction is refused before anything is stored.
func TestTooLarge(t *testing.T) {
	db := openDB(t, sqltest.SQLite(t))
	tr := New(db)
	tr.MaxBody = 512
	as := newAS()
	srv := serve(t, tr, as, nil)
	events := []json.RawMessage{}
	for i := range 10 {
		events = append(events, pdu(fmt.Sprintf("$m%d", i), "m.room.message"))
	}
	if status, _ := put(t, srv, hsToken, "big", txnBody(events)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", status)
	}
	equal(t, "stored", unhandledIDs(t, db), nil)
	equal(t, "delivered", drain(as), nil)
}

// TestRetriedTransaction: a homeserver retrying a transaction (same ID, or its events
// again under a new ID) stores and delivers each event once; the other parts of a
// re-sent transaction still get through.
func TestRetriedTransaction(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		db := openDB(t, raw)
		as := newAS()
		srv := serve(t, New(db), as, nil)
		events := []json.RawMessage{pdu("$m1", "m.room.message"), pdu("$m2", "m.room.message")}
		for range 2 {
			if status, resp := put(t, srv, hsToken, "txn1", txnBody(events)); status != http.StatusOK {
				t.Fatalf("status %d: %s", status, resp)
			}
		}
		resent := txnBody(append(events, pdu("$m3", "m.room.message")), typing())
		if status, resp := put(t, srv, hsToken, "txn2", resent); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, resp)
		}
		twice := txnBody([]json.RawMessage{pdu("$m4", "m.room.message"), pdu("$m4", "m.room.message")})
		if status, resp := put(t, srv, hsToken, "txn3", twice); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, resp)
		}
		equal(t, "stored", unhandledIDs(t, db), []string{"$m1", "$m2", "$m3", "$m4"})
		equal(t, "delivered", drain(as), []string{"$m1", "$m2", "m.typing", "$m3", "$m4"})
	})
}

// TestReplayAfterCrash: events stored but not handled when the bridge died are
// delivered once, in order, by the next process; handled ones never; a homeserver
// re-sending the transaction the dead process never answered delivers nothing twice.
func TestReplayAfterCrash(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		db := openDB(t, raw)
		body := txnBody([]json.RawMessage{pdu("$m1", "m.room.message"), pdu("$j1", "m.room.member"),
			pdu("$m2", "m.room.message"), pdu("$m3", "m.reaction")})

		// First process: stores and delivers, handles $m1 and $m2, then dies.
		first := New(db)
		as1 := newAS()
		srv1 := serve(t, first, as1, nil)
		if status, resp := put(t, srv1, hsToken, "txn1", body); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, resp)
		}
		equal(t, "first process got", drain(as1), []string{"$m1", "$j1", "$m2", "$m3"})
		for _, evtID := range []string{"$m1", "$m2"} {
			if err := first.MarkHandled(ctx, evtID); err != nil {
				t.Fatal(err)
			}
		}
		srv1.Close()

		// Second process.
		second := New(db)
		as2 := newAS()
		srv2 := serve(t, second, as2, nil)
		n, err := second.Replay(ctx, as2)
		if err != nil || n != 2 {
			t.Fatalf("replay: %d events, %v", n, err)
		}
		equal(t, "replayed", drain(as2), []string{"$j1", "$m3"})
		if n, err := second.Replay(ctx, as2); err != nil || n != 0 {
			t.Errorf("second replay: %d events, %v", n, err)
		}
		if status, resp := put(t, srv2, hsToken, "txn1", body); status != http.StatusOK {
			t.Fatalf("re-sent: status %d: %s", status, resp)
		}
		equal(t, "after re-sent transaction and second replay", drain(as2), nil)

		// The second process handles the rest; a third process replays nothing.
		for _, evtID := range []string{"$j1", "$m3"} {
			if err := second.MarkHandled(ctx, evtID); err != nil {
				t.Fatal(err)
			}
		}
		as3 := newAS()
		if n, err := New(db).Replay(ctx, as3); err != nil || n != 0 {
			t.Errorf("third replay: %d events, %v", n, err)
		}
		equal(t, "third process got", drain(as3), nil)
	})
}

// TestReplayMaxAge: events stored longer ago than MaxAge are retired, not replayed.
func TestReplayMaxAge(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		db := openDB(t, raw)
		base := time.UnixMilli(1_700_000_000_000)
		now := base
		db.Now = func() time.Time { return now }
		for _, evtID := range []string{"$old", "$fresh"} {
			if err := db.PutTxn(ctx, "txn-"+evtID, []database.TxnEvent{{EventID: evtID, Body: pdu(evtID, "m.room.message")}}); err != nil {
				t.Fatal(err)
			}
			now = now.Add(48 * time.Hour)
		}
		tr := New(db)
		tr.MaxAge = 24 * time.Hour
		tr.Now = func() time.Time { return base.Add(49 * time.Hour) }
		as := newAS()
		if n, err := tr.Replay(ctx, as); err != nil || n != 1 {
			t.Fatalf("replay: %d events, %v", n, err)
		}
		equal(t, "replayed", drain(as), []string{"$fresh"})
		equal(t, "unhandled", unhandledIDs(t, db), []string{"$fresh"})
	})
}

// TestReplayRefused: a replay the appservice refuses is an error and leaves the events
// to be replayed again.
func TestReplayRefused(t *testing.T) {
	db := openDB(t, sqltest.SQLite(t))
	ctx := context.Background()
	if err := db.PutTxn(ctx, "txn1", []database.TxnEvent{{EventID: "$m1", Body: pdu("$m1", "m.room.message")}}); err != nil {
		t.Fatal(err)
	}
	tr := New(db)
	broken := newAS()
	broken.Router = http.NewServeMux() // no transaction route: 404
	if _, err := tr.Replay(ctx, broken); err == nil {
		t.Fatal("replay into a refusing appservice succeeded")
	}
	as := newAS()
	if n, err := tr.Replay(ctx, as); err != nil || n != 1 {
		t.Fatalf("replay: %d events, %v", n, err)
	}
	equal(t, "replayed", drain(as), []string{"$m1"})
}

// TestHook: once bridgev2's handlers returned, the event is handled unless the connector
// claimed it; a claimed event is handled when the connector says so.
func TestHook(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		db := openDB(t, raw)
		tr := New(db)
		as := newAS()
		ep := appservice.NewEventProcessor(as)
		ep.ExecMode = appservice.Sync
		var mu sync.Mutex
		var order []string
		bridgeHandler := func(ctx context.Context, evt *event.Event) {
			handled, err := db.HandledOf(ctx, []string{evt.ID.String()})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			order = append(order, fmt.Sprintf("%s handled=%v", evt.ID, handled[evt.ID.String()]))
			if evt.ID == "$claimed" {
				tr.Claim(evt.ID.String())
			}
		}
		ep.On(event.EventMessage, bridgeHandler)
		ep.On(event.StateMember, bridgeHandler)
		ep.On(event.EventReaction, bridgeHandler)
		tr.Defer = func(_ context.Context, evt *event.Event) bool { return evt.Type == event.EventReaction }
		if err := tr.Hook(ep); err != nil {
			t.Fatal(err)
		}

		evts := []json.RawMessage{pdu("$ignored", "m.room.message"), pdu("$claimed", "m.room.message"),
			pdu("$join", "m.room.member"), pdu("$deferred", "m.reaction")}
		srv := serve(t, tr, as, nil)
		if status, resp := put(t, srv, hsToken, "txn1", txnBody(evts)); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, resp)
		}
		for range evts {
			ep.Dispatch(ctx, <-as.Events)
		}
		equal(t, "bridge saw", order, []string{"$ignored handled=false", "$claimed handled=false",
			"$join handled=false", "$deferred handled=false"})
		equal(t, "unhandled after dispatch", unhandledIDs(t, db), []string{"$claimed", "$deferred"})
		for _, evtID := range []string{"$claimed", "$deferred"} {
			if err := tr.MarkHandled(ctx, evtID); err != nil {
				t.Fatal(err)
			}
		}
		equal(t, "unhandled after ack", unhandledIDs(t, db), nil)

		async := appservice.NewEventProcessor(as)
		if err := tr.Hook(async); !errors.Is(err, ErrAsyncHandlers) {
			t.Errorf("hook on async processor: %v", err)
		}
	})
}

// TestPruneLoop: rows handled longer ago than keep go, unhandled and recent rows stay.
func TestPruneLoop(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		db := openDB(t, raw)
		base := time.UnixMilli(1_700_000_000_000)
		now := base
		db.Now = func() time.Time { return now }
		evts := []database.TxnEvent{}
		for _, evtID := range []string{"$old", "$recent", "$open"} {
			evts = append(evts, database.TxnEvent{EventID: evtID, Body: pdu(evtID, "m.room.message")})
		}
		if err := db.PutTxn(ctx, "txn1", evts); err != nil {
			t.Fatal(err)
		}
		tr := New(db)
		if err := tr.MarkHandled(ctx, "$old"); err != nil {
			t.Fatal(err)
		}
		now = base.Add(23 * time.Hour)
		if err := tr.MarkHandled(ctx, "$recent"); err != nil {
			t.Fatal(err)
		}
		tr.Now = func() time.Time { return base.Add(25 * time.Hour) }

		loopCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			tr.PruneLoop(loopCtx, time.Millisecond, 24*time.Hour)
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			stored, err := db.HandledOf(ctx, []string{"$old", "$recent", "$open"})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := stored["$old"]; !ok {
				if len(stored) != 2 || !stored["$recent"] || stored["$open"] {
					t.Errorf("after prune: %v", stored)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("handled row never pruned")
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
	})
}

// TestHoldForReplay: a transaction arriving before the replay waits for it, so the
// events stored before the crash are processed before the new ones.
func TestHoldForReplay(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		db := openDB(t, raw)
		old := []database.TxnEvent{
			{EventID: "$old1", Body: pdu("$old1", "m.room.message")},
			{EventID: "$old2", Body: pdu("$old2", "m.room.message")},
		}
		if err := db.PutTxn(ctx, "before-crash", old); err != nil {
			t.Fatal(err)
		}
		tr := New(db)
		tr.HoldForReplay()
		as := newAS()
		srv := serve(t, tr, as, nil)

		answered := make(chan int, 1)
		go func() {
			status, _ := put(t, srv, hsToken, "after-start", txnBody([]json.RawMessage{pdu("$new", "m.room.message")}))
			answered <- status
		}()
		select {
		case status := <-answered:
			t.Fatalf("transaction answered %d before the replay", status)
		case <-time.After(200 * time.Millisecond):
		}
		equal(t, "delivered before the replay", drain(as), nil)

		if n, err := tr.Replay(ctx, as); err != nil || n != 2 {
			t.Fatalf("replay: %d events, %v", n, err)
		}
		if status := <-answered; status != http.StatusOK {
			t.Fatalf("held transaction: status %d", status)
		}
		equal(t, "delivered", drain(as), []string{"$old1", "$old2", "$new"})
	})
}

// TestAttach: the wiring a connector does in Init, end to end: a transaction waits for
// the replay, is stored, and is handled once the event processor dispatched it.
func TestAttach(t *testing.T) {
	db := openDB(t, sqltest.SQLite(t))
	ctx := context.Background()
	tr := New(db)
	as := newAS()
	if err := tr.Attach(as, appservice.NewEventProcessor(as)); !errors.Is(err, ErrAsyncHandlers) || len(as.Middleware) != 0 {
		t.Fatalf("attach to async processor: %v, %d middleware", err, len(as.Middleware))
	}
	ep := appservice.NewEventProcessor(as)
	ep.ExecMode = appservice.Sync
	if err := tr.Attach(as, ep); err != nil || len(as.Middleware) != 1 {
		t.Fatalf("attach: %v, %d middleware", err, len(as.Middleware))
	}
	srv := httptest.NewServer(exhttp.ApplyMiddleware(as.Router, as.Middleware...))
	defer srv.Close()

	answered := make(chan int, 1)
	go func() {
		status, _ := put(t, srv, hsToken, "txn1", txnBody([]json.RawMessage{pdu("$m1", "m.room.message")}))
		answered <- status
	}()
	select {
	case status := <-answered:
		t.Fatalf("answered %d before the replay", status)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := tr.Replay(ctx, as); err != nil {
		t.Fatal(err)
	}
	if status := <-answered; status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	equal(t, "stored", unhandledIDs(t, db), []string{"$m1"})
	ep.Dispatch(ctx, <-as.Events)
	equal(t, "unhandled after dispatch", unhandledIDs(t, db), nil)
}
