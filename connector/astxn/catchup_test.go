package astxn

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// fakeSync is a homeserver's /sync and /messages as the catch-up reads them: each
// /sync answers the next prepared response, /messages the prepared pages.
type fakeSync struct {
	mu       sync.Mutex
	syncs    []map[string]any
	pages    map[string]map[string]any // by from token
	sinces   []string
	filters  []string
	messages []string // from tokens asked for
}

func (f *fakeSync) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer as-token" {
		http.Error(w, `{"errcode":"M_UNKNOWN_TOKEN"}`, http.StatusUnauthorized)
		return
	}
	var answer any
	switch {
	case r.URL.Path == "/_matrix/client/v3/sync":
		f.sinces = append(f.sinces, r.URL.Query().Get("since"))
		f.filters = append(f.filters, r.URL.Query().Get("filter"))
		if len(f.syncs) == 0 {
			answer = map[string]any{"next_batch": "s-end"}
			break
		}
		answer, f.syncs = f.syncs[0], f.syncs[1:]
	case strings.HasSuffix(r.URL.Path, "/messages"):
		from := r.URL.Query().Get("from")
		f.messages = append(f.messages, from)
		answer = f.pages[from]
		if answer == nil {
			answer = map[string]any{"chunk": []any{}}
		}
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

// timelineEvent is a /sync timeline event: no room_id.
func timelineEvent(evtID, evtType, sender string, ts time.Time) map[string]any {
	return map[string]any{"event_id": evtID, "type": evtType, "sender": sender,
		"origin_server_ts": ts.UnixMilli(), "content": map[string]any{"msgtype": "m.text", "body": "hi"}}
}

func joined(rooms map[string]map[string]any) map[string]any {
	join := map[string]any{}
	for roomID, timeline := range rooms {
		join[roomID] = map[string]any{"timeline": timeline}
	}
	return map[string]any{"join": join}
}

func newCatchUpAS(t *testing.T, hs http.Handler) *appservice.AppService {
	t.Helper()
	srv := httptest.NewServer(hs)
	t.Cleanup(srv.Close)
	as := newAS()
	as.Registration.SenderLocalpart = "bot"
	as.HomeserverDomain = "hs.test"
	if err := as.SetHomeserverURL(srv.URL); err != nil {
		t.Fatal(err)
	}
	return as
}

// The catch-up bridges what no transaction brought, once it is Grace old, and never an
// event a transaction delivered or that was handled; its cursor carries across looks.
func TestCatchUp(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		db := openDB(t, raw)
		now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
		clock := func() time.Time { return now }
		tr := New(db)
		tr.Now = clock
		tr.MaxAge = 24 * time.Hour
		hs := &fakeSync{pages: map[string]map[string]any{}}
		as := newCatchUpAS(t, hs)
		srv := serve(t, tr, as, nil)
		c := &CatchUp{Tracker: tr, AS: as, Cursor: db, Interval: time.Minute, Grace: 30 * time.Second,
			Ignore: func(u id.UserID) bool { return strings.HasPrefix(u.String(), "@ghost_") || u == "@bot:hs.test" }}

		// First look ever: only takes a cursor.
		hs.syncs = []map[string]any{{"next_batch": "s1"}}
		if err := c.Look(ctx); err != nil {
			t.Fatal(err)
		}
		equal(t, "first look delivered", drain(as), nil)
		if hs.filters[0] != cursorOnlyFilter {
			t.Errorf("the first look synced with %s, want no rooms at all", hs.filters[0])
		}

		// $known came in a transaction and was handled; $old was missed long enough ago;
		// $recent may still be on its way; ghosts' events, untracked types and events
		// older than MaxAge are left alone. The second room's timeline was cut: $gap
		// comes from reading back.
		if status, resp := put(t, srv, hsToken, "txn1", txnBody([]json.RawMessage{pdu("$known", "m.room.message")})); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, resp)
		}
		drain(as)
		if err := tr.MarkHandled(ctx, "$known"); err != nil {
			t.Fatal(err)
		}
		hs.syncs = []map[string]any{{"next_batch": "s2", "rooms": joined(map[string]map[string]any{
			"!a:hs.test": {"events": []any{
				timelineEvent("$known", "m.room.message", "@alice:hs.test", now.Add(-time.Minute)),
				timelineEvent("$old", "m.room.message", "@alice:hs.test", now.Add(-time.Minute)),
				timelineEvent("$ghost", "m.room.message", "@ghost_1:hs.test", now.Add(-time.Minute)),
				timelineEvent("$typing", "m.typing", "@alice:hs.test", now.Add(-time.Minute)),
				timelineEvent("$ancient", "m.room.message", "@alice:hs.test", now.Add(-48*time.Hour)),
				timelineEvent("$recent", "m.room.message", "@alice:hs.test", now.Add(-time.Second)),
			}},
			"!b:hs.test": {"limited": true, "prev_batch": "p1", "events": []any{
				timelineEvent("$tail", "m.reaction", "@bob:hs.test", now.Add(-time.Minute)),
			}},
		})}}
		hs.pages["p1"] = map[string]any{"chunk": []any{timelineEvent("$gap", "m.room.message", "@bob:hs.test", now.Add(-2*time.Minute))}, "end": "p2"}
		if err := c.Look(ctx); err != nil {
			t.Fatal(err)
		}
		got := drain(as)
		// Rooms come in map order: compare as a set, and the room's order within.
		if len(got) != 3 || !containsAll(got, "$old", "$gap", "$tail") || slices.Index(got, "$gap") > slices.Index(got, "$tail") {
			t.Errorf("second look delivered %q, want $old, $gap and $tail ($gap before $tail)", got)
		}
		if hs.sinces[1] != "s1" || !slices.Equal(hs.messages, []string{"p1", "p2"}) {
			t.Errorf("synced since %q, read back from %q; want since s1, then pages p1 and p2", hs.sinces, hs.messages)
		}
		if !strings.Contains(hs.filters[1], `"m.room.message"`) {
			t.Errorf("sync filter %s does not ask for messages", hs.filters[1])
		}
		if unhandled := unhandledIDs(t, db); !containsAll(unhandled, "$old", "$gap", "$tail", "$recent") || len(unhandled) != 4 {
			t.Errorf("stored unhandled %q, want the four missed events", unhandled)
		}

		// $recent's transaction arrives within the grace: delivered once, by it.
		if status, resp := put(t, srv, hsToken, "txn2", txnBody([]json.RawMessage{pdu("$recent", "m.room.message")})); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, resp)
		}
		equal(t, "late transaction delivered", drain(as), []string{"$recent"})
		now = now.Add(time.Minute)
		if err := c.Look(ctx); err != nil {
			t.Fatal(err)
		}
		equal(t, "after the grace", drain(as), nil)
		if hs.sinces[2] != "s2" {
			t.Errorf("third look synced since %q, want s2", hs.sinces[2])
		}

		// A missed event handed over by the catch-up and then handled is not handed over
		// again when Synapse finally sends its stranded transaction.
		if err := tr.MarkHandled(ctx, "$old"); err != nil {
			t.Fatal(err)
		}
		if status, resp := put(t, srv, hsToken, "73", txnBody([]json.RawMessage{pdu("$old", "m.room.message")})); status != http.StatusOK {
			t.Fatalf("status %d: %s", status, resp)
		}
		equal(t, "stranded transaction sent at last", drain(as), nil)
	})
}

// A missed event still within its grace when the bridge stops is stored, so the next
// start replays it.
func TestCatchUpStoresBeforeGrace(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		db := openDB(t, raw)
		now := time.Now()
		tr := New(db)
		hs := &fakeSync{syncs: []map[string]any{{"next_batch": "s2", "rooms": joined(map[string]map[string]any{
			"!a:hs.test": {"events": []any{timelineEvent("$m", "m.room.message", "@alice:hs.test", now)}},
		})}}}
		as := newCatchUpAS(t, hs)
		if err := db.SetASCursor(ctx, catchUpCursor, "s1"); err != nil {
			t.Fatal(err)
		}
		c := &CatchUp{Tracker: tr, AS: as, Cursor: db, Interval: time.Minute, Grace: time.Hour}
		if err := c.Look(ctx); err != nil {
			t.Fatal(err)
		}
		equal(t, "delivered within the grace", drain(as), nil)

		next := New(db)
		as2 := newAS()
		if n, err := next.Replay(ctx, as2); err != nil || n != 1 {
			t.Fatalf("replay after restart: %d events, %v", n, err)
		}
		evt := <-as2.Events
		if evt.ID != "$m" || evt.RoomID != "!a:hs.test" {
			t.Errorf("replayed %s in %s, want $m in !a:hs.test", evt.ID, evt.RoomID)
		}
	})
}

func containsAll(list []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(list, w) {
			return false
		}
	}
	return true
}
