//go:build synapse

package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// A message Synapse accepted but whose appservice transaction never reached the
// bridge (as when Synapse strands a transaction after the bridge was down) still
// reaches the Meta user, once, through the bridge's catch-up. The transaction is lost
// by a proxy between Synapse and the bridge that answers 200 without passing it on.
func TestSynapseCatchUpLostTransaction(t *testing.T) {
	const lostText = "lost between Synapse and the bridge"
	var dropped atomic.Int32
	e := startStack(t, false, func(o *kit.StackOptions) {
		o.BridgeConfig = map[string]any{
			"network.matrix_catchup.interval_seconds": 2,
			"network.matrix_catchup.grace_seconds":    2,
		}
		o.TransactionProxy = func(forward http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				if r.Method == http.MethodPut && strings.Contains(string(body), lostText) && dropped.CompareAndSwap(0, 1) {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write([]byte("{}"))
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				forward.ServeHTTP(w, r)
			})
		}
	})
	c := e.openChat("+491705550005", "+491706660006")
	_, err := e.alice.SendText(e.ctx, c.room, lostText)
	e.must(err)
	_, err = e.alice.SendText(e.ctx, c.room, "sent after it")
	e.must(err)

	text := url.Values{"kind": {"text"}}
	_, err = c.peer.WaitInbox(e.ctx, 30*time.Second, "the message sent after the lost one", text, inboxText("sent after it"))
	e.must(err)
	if dropped.Load() != 1 {
		t.Fatal("the proxy never saw the message's transaction")
	}
	_, err = c.peer.WaitInbox(e.ctx, 30*time.Second, "the message whose transaction was lost", text, inboxText(lostText))
	e.must(err)

	// Exactly once, even after a few more looks.
	time.Sleep(5 * time.Second)
	items, _, err := c.peer.Inbox(e.ctx, 0, 0, text)
	e.must(err)
	n := 0
	for _, item := range items {
		if inboxText(lostText)(item) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the lost message reached the Meta user %d times, want once", n)
	}
}
