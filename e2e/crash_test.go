//go:build synapse

package e2e

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

// The bridge is killed with SIGKILL in the middle of a 500-message exchange (250 each
// way, sent while it is down too) and restarted: every message arrives exactly once
// on both sides. Matrix → Meta relies on the persisted appservice transactions (and
// Synapse resending the one it could not deliver); Meta → Matrix on acking stanzas
// only after the Matrix event is sent, and on the outbox.
//
// Synapse itself can strand one transaction while it re-sends the ones the bridge
// missed (see connector/astxn's CatchUp): the bridge's catch-up, looking every 5 s
// here, brings such a message over.
func TestSynapseSIGKILLLosesNothing(t *testing.T) {
	dbs := []bool{false, true}
	for _, pg := range dbs {
		name := "SQLite"
		if pg {
			name = "PostgreSQL"
		}
		t.Run(name, func(t *testing.T) { testSIGKILL(t, pg) })
	}
}

func testSIGKILL(t *testing.T, pg bool) {
	const perSide = 250
	e := startStack(t, pg, func(o *kit.StackOptions) {
		o.MetasimDebug = true
		o.BridgeConfig = map[string]any{
			"network.matrix_catchup.interval_seconds": 5,
			"network.matrix_catchup.grace_seconds":    5,
		}
		o.Metasim = func(c *metasim.Config) {
			for _, name := range metasim.Networks() {
				l := &c.Network(name).Limits
				l.PushInterval = metasim.Duration(100 * time.Millisecond)
				l.BurstMessages, l.HourlyMessages = 100000, 100000
			}
		}
	})
	c := e.openChat("+491703330003", "+491704440004")
	ctx, cancel := context.WithTimeout(e.ctx, 6*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	progress := make(chan struct{}, 2*perSide)
	// Meta → Matrix, paced so the kill falls in the middle.
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range perSide {
			if _, err := c.peer.SendText(ctx, c.account, fmt.Sprintf("meta-%03d", i)); err != nil {
				errs <- fmt.Errorf("meta send %d: %w", i, err)
				return
			}
			progress <- struct{}{}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	// Matrix → Meta through Synapse, which keeps accepting while the bridge is down.
	go func() {
		defer wg.Done()
		for i := range perSide {
			if _, err := e.alice.SendText(ctx, c.room, fmt.Sprintf("mx-%03d", i)); err != nil {
				errs <- fmt.Errorf("matrix send %d: %w", i, err)
				return
			}
			progress <- struct{}{}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// Kill once a fifth of the messages are out, restart two seconds later (the
	// senders carry on meanwhile).
	for range 2 * perSide / 5 {
		select {
		case <-progress:
		case err := <-errs:
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal("the senders stalled before the kill")
		}
	}
	pid := e.st.Bridge.PID()
	e.st.Bridge.Kill()
	t.Logf("killed the bridge (pid %d) with SIGKILL", pid)
	time.Sleep(2 * time.Second)
	if err := e.st.Bridge.Start(ctx); err != nil {
		t.Fatalf("failed to restart the bridge: %v", err)
	}
	restarted := time.Now()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	// Meta → Matrix: each body once, from the ghost.
	fromMeta := func(evt *event.Event) bool {
		return evt.Type == event.EventMessage && evt.RoomID == c.room && evt.Sender == c.ghost
	}
	deadline := time.Now().Add(4 * time.Minute)
	var got map[string]int
	for {
		got = map[string]int{}
		seen := map[string]bool{}
		for _, evt := range e.alice.Events(fromMeta) {
			if seen[evt.ID.String()] {
				continue
			}
			seen[evt.ID.String()] = true
			got[evt.Content.AsMessage().Body]++
		}
		if len(got) >= perSide || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	checkExactlyOnce(t, "Matrix room (Meta → Matrix)", "meta-%03d", perSide, got)
	t.Logf("Meta → Matrix complete %.1f s after the restart", time.Since(restarted).Seconds())

	// Matrix → Meta: each text once on the Meta user's device.
	got = map[string]int{}
	var since int64
	for len(got) < perSide && time.Now().Before(deadline) {
		items, next, err := c.peer.Inbox(ctx, since, 10*time.Second, url.Values{"kind": {"text"}, "device": {c.peer.JID}})
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range items {
			data, _ := item["data"].(map[string]any)
			if text, _ := data["text"].(string); text != "" {
				got[text]++
			}
		}
		since = next
	}
	// A last look for late duplicates.
	items, _, err := c.peer.Inbox(ctx, since, 3*time.Second, url.Values{"kind": {"text"}, "device": {c.peer.JID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, item := range items {
		data, _ := item["data"].(map[string]any)
		if text, _ := data["text"].(string); text != "" {
			got[text]++
		}
	}
	checkExactlyOnce(t, "Meta user's device (Matrix → Meta)", "mx-%03d", perSide, got)
	t.Logf("Matrix → Meta complete %.1f s after the restart", time.Since(restarted).Seconds())

	// And nothing doubled in the room late either.
	time.Sleep(2 * time.Second)
	dup := map[string]int{}
	seen := map[string]bool{}
	for _, evt := range e.alice.Events(fromMeta) {
		if !seen[evt.ID.String()] {
			seen[evt.ID.String()] = true
			dup[evt.Content.AsMessage().Body]++
		}
	}
	checkExactlyOnce(t, "Matrix room after settling", "meta-%03d", perSide, dup)
}

// checkExactlyOnce fails unless got holds each of the n formatted bodies exactly once
// and nothing else.
func checkExactlyOnce(t *testing.T, where, format string, n int, got map[string]int) {
	t.Helper()
	var missing, doubled []string
	for i := range n {
		body := fmt.Sprintf(format, i)
		switch got[body] {
		case 0:
			missing = append(missing, body)
		case 1:
		default:
			doubled = append(doubled, fmt.Sprintf("%s×%d", body, got[body]))
		}
		delete(got, body)
	}
	if len(missing) > 0 || len(doubled) > 0 || len(got) > 0 {
		t.Errorf("%s: %d missing %v, %d doubled %v, %d unexpected %v", where, len(missing), missing, len(doubled), doubled, len(got), got)
	}
}
