package astxn

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/util/exhttp"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
)

// memStore is an in-memory Store for the fuzz test, where a database per input would
// be far too slow.
type memStore struct {
	mu      sync.Mutex
	order   []string
	handled map[string]bool
}

func (m *memStore) PutTxn(_ context.Context, _ string, events []database.TxnEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, evt := range events {
		if _, ok := m.handled[evt.EventID]; !ok {
			m.handled[evt.EventID] = false
			m.order = append(m.order, evt.EventID)
		}
	}
	return nil
}

func (m *memStore) MarkHandled(_ context.Context, eventID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.handled[eventID]; ok {
		m.handled[eventID] = true
	}
	return nil
}

func (m *memStore) Unhandled(context.Context, int) ([]database.TxnEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []database.TxnEvent
	for _, evtID := range m.order {
		if !m.handled[evtID] {
			out = append(out, database.TxnEvent{EventID: evtID, Body: json.RawMessage(`{}`)})
		}
	}
	return out, nil
}

func (m *memStore) PruneHandled(context.Context, time.Time) (int64, error) { return 0, nil }

func (m *memStore) HandledOf(_ context.Context, ids []string) (map[string]bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{}
	for _, evtID := range ids {
		if handled, ok := m.handled[evtID]; ok {
			out[evtID] = handled
		}
	}
	return out, nil
}

// FuzzMiddleware: arbitrary authenticated transaction bodies never panic, get an answer
// the homeserver understands, and a 200 means every tracked event with an ID is stored.
func FuzzMiddleware(f *testing.F) {
	f.Add(string(txnBody([]json.RawMessage{pdu("$m1", "m.room.message"), pdu("$j1", "m.room.member")}, typing())))
	f.Add(`{"events":[{"event_id":"$a","type":"m.room.message"},{"event_id":"$a","type":"m.room.message"}]}`)
	f.Add(`{"events":[{"event_id":1}],"ephemeral":null}`)
	f.Add(`{"events":null}`)
	f.Add(`[]`)
	f.Add(`{"events":[{"event_id":"$x","type":"m.reaction","content":"nope"}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		store := &memStore{handled: map[string]bool{}}
		tr := New(store)
		tr.MaxBody = 1 << 16
		as := newAS()
		handler := exhttp.ApplyMiddleware(as.Router, tr.Middleware(as))
		req := httptest.NewRequest(http.MethodPut, txnPathPrefix+"fuzz", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+hsToken)
		rec := httptest.NewRecorder()
		// The appservice blocks on a full event channel, as it would without a processor:
		// consume events while it works.
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-as.Events:
				case <-as.ToDeviceEvents:
				case <-stop:
					return
				}
			}
		}()
		served := make(chan struct{})
		go func() { handler.ServeHTTP(rec, req); close(served) }()
		select {
		case <-served:
		case <-time.After(3 * time.Second):
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("hang on %q\n%s", body, buf[:n])
		}
		close(stop)
		switch rec.Code {
		case http.StatusOK:
			var txn struct {
				Events []txnEventHead `json:"events"`
			}
			if json.Unmarshal([]byte(body), &txn) != nil {
				return
			}
			for _, head := range txn.Events {
				if head.ID != "" && tr.tracks(head.Type) {
					if _, ok := store.handled[head.ID]; !ok {
						t.Errorf("200 but %q not stored", head.ID)
					}
				}
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Errorf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
