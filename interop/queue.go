package interop

import (
	"context"
	"sync"
)

// eventQueue decouples the reading goroutine from the Handler. It is unbounded on
// purpose: a bounded queue would block the reader while the Handler waits for an iq
// answer that only the reader can deliver. Its size is bounded in practice by the
// gateway's offline queue (at most 10,000 stanzas, PROTOCOL.md section 3.2).
type eventQueue struct {
	mu     sync.Mutex
	items  []Event
	closed bool
	signal chan struct{}
}

func newEventQueue() *eventQueue {
	return &eventQueue{signal: make(chan struct{}, 1)}
}

func (q *eventQueue) push(evt Event) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, evt)
	}
	q.mu.Unlock()
	q.wake()
}

// close lets the dispatcher drain what is queued and then stop.
func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

func (q *eventQueue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// pop returns the next event; ok is false once the queue is closed and empty.
func (q *eventQueue) pop(ctx context.Context) (evt Event, ok bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			evt = q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return evt, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// dispatch calls handler for each event until the queue is closed and drained, or
// ctx is done (then queued stanzas are dropped: they were not acked, so the gateway
// delivers them again).
func (q *eventQueue) dispatch(ctx context.Context, handler func(context.Context, Event)) {
	for {
		if ctx.Err() != nil {
			return
		}
		evt, ok := q.pop(ctx)
		if !ok {
			return
		}
		if handler != nil {
			handler(ctx, evt)
		}
	}
}
