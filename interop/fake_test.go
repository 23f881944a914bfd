package interop

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// fakeConn is the client's end of an in-memory connection; fakeGateway is the other
// end, played by the test.
type fakeConn struct {
	toClient   chan []byte
	fromClient chan []byte
	closed     chan struct{}
	once       sync.Once
}

var (
	_ FrameConn = (*fakeConn)(nil)
)

func (f *fakeConn) ReadFrame(ctx context.Context) ([]byte, error) {
	select {
	case b := <-f.toClient:
		return b, nil
	case <-f.closed:
		return nil, errors.New("fake connection closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeConn) WriteFrame(ctx context.Context, frame []byte) error {
	select {
	case <-f.closed:
		return errors.New("fake connection closed")
	default:
	}
	select {
	case f.fromClient <- frame:
		return nil
	case <-f.closed:
		return errors.New("fake connection closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeConn) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

type fakeGateway struct {
	t    testing.TB
	conn *fakeConn
}

// send writes a stanza to the client.
func (g *fakeGateway) send(n stanza.Node) {
	g.t.Helper()
	b, err := stanza.Marshal(n)
	if err != nil {
		g.t.Fatalf("failed to encode %s: %v", n, err)
	}
	g.sendRaw(b)
}

func (g *fakeGateway) sendRaw(b []byte) {
	g.t.Helper()
	select {
	case g.conn.toClient <- b:
	case <-g.conn.closed:
		g.t.Errorf("client closed the connection before it got a frame")
	case <-time.After(2 * time.Second):
		g.t.Fatalf("client does not read")
	}
}

// recv returns the next stanza the client wrote.
func (g *fakeGateway) recv() stanza.Node {
	g.t.Helper()
	n, ok := g.tryRecv(2 * time.Second)
	if !ok {
		g.t.Fatalf("no stanza from the client")
	}
	return n
}

// tryRecv waits up to d for a stanza; false when none came (or the link closed).
func (g *fakeGateway) tryRecv(d time.Duration) (stanza.Node, bool) {
	g.t.Helper()
	select {
	case b := <-g.conn.fromClient:
		n, err := stanza.Unmarshal(b)
		if err != nil {
			g.t.Fatalf("client wrote an undecodable frame: %v", err)
		}
		return n, true
	case <-g.conn.closed:
		return stanza.Node{}, false
	case <-time.After(d):
		return stanza.Node{}, false
	}
}

// recvTag skips keep-alive pings and returns the next other stanza.
func (g *fakeGateway) recvNonPing() stanza.Node {
	g.t.Helper()
	for {
		n := g.recv()
		if _, ping := n.Child("ping"); !ping {
			return n
		}
	}
}

func (g *fakeGateway) waitClosed() {
	g.t.Helper()
	select {
	case <-g.conn.closed:
	case <-time.After(2 * time.Second):
		g.t.Fatalf("client did not drop the connection")
	}
}

func (g *fakeGateway) isClosed() bool {
	select {
	case <-g.conn.closed:
		return true
	default:
		return false
	}
}

// success completes the login.
func (g *fakeGateway) success() {
	g.t.Helper()
	g.send(stanza.Node{Tag: "success", Attrs: stanza.Attrs{"t": "1700000000"}})
}

// fakeDialer hands out fake connections; the test takes the gateway ends from gws.
// Entries of failures make the next dials fail.
type fakeDialer struct {
	t        testing.TB
	gws      chan *fakeGateway
	mu       sync.Mutex
	failures []error
	dials    []time.Time
}

func newFakeDialer(t testing.TB) *fakeDialer {
	return &fakeDialer{t: t, gws: make(chan *fakeGateway, 16)}
}

func (d *fakeDialer) failNext(errs ...error) {
	d.mu.Lock()
	d.failures = append(d.failures, errs...)
	d.mu.Unlock()
}

func (d *fakeDialer) dial(ctx context.Context) (FrameConn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, time.Now())
	if len(d.failures) > 0 {
		err := d.failures[0]
		d.failures = d.failures[1:]
		d.mu.Unlock()
		return nil, err
	}
	d.mu.Unlock()
	fc := &fakeConn{
		toClient:   make(chan []byte),
		fromClient: make(chan []byte, 64),
		closed:     make(chan struct{}),
	}
	d.gws <- &fakeGateway{t: d.t, conn: fc}
	return fc, nil
}

// next returns the gateway end of the next connection.
func (d *fakeDialer) next() *fakeGateway {
	d.t.Helper()
	select {
	case gw := <-d.gws:
		return gw
	case <-time.After(3 * time.Second):
		d.t.Fatalf("client did not dial")
		return nil
	}
}

func (d *fakeDialer) dialCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dials)
}

// eventLog collects the events a Handler got.
type eventLog struct {
	ch chan Event
}

func newEventLog() *eventLog { return &eventLog{ch: make(chan Event, 256)} }

func (l *eventLog) handle(_ context.Context, evt Event) { l.ch <- evt }

// next returns the next event.
func (l *eventLog) next(t testing.TB) Event {
	t.Helper()
	select {
	case evt := <-l.ch:
		return evt
	case <-time.After(3 * time.Second):
		t.Fatalf("no event")
		return nil
	}
}

// waitFor skips events until one of type T.
func waitFor[T Event](t testing.TB, l *eventLog) T {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case evt := <-l.ch:
			if e, ok := evt.(T); ok {
				return e
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T event", zero)
			return zero
		}
	}
}

// testClient is a client wired to a fake dialer and running until the test ends.
type testClient struct {
	*Client
	dialer *fakeDialer
	events *eventLog
	done   chan error
	cancel context.CancelFunc
}

// fastConfig has timeouts short enough for tests and long enough not to fire by
// accident; tests that need one to fire shorten it further.
func fastConfig() Config {
	return Config{
		PingInterval:   time.Hour,
		IQTimeout:      time.Second,
		IdleTimeout:    time.Hour,
		ConnectTimeout: time.Second,
		Backoff:        Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Jitter: -1},
	}
}

func startClient(t testing.TB, cfg Config) *testClient {
	t.Helper()
	d := newFakeDialer(t)
	l := newEventLog()
	cfg.Dial = d.dial
	cfg.Handler = l.handle
	c := NewClient(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	tc := &testClient{Client: c, dialer: d, events: l, done: make(chan error, 1), cancel: cancel}
	go func() { tc.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-tc.done:
		case <-time.After(3 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return tc
}

// connect dials, sends <success> and waits for Connected.
func (tc *testClient) connect(t testing.TB) *fakeGateway {
	t.Helper()
	gw := tc.dialer.next()
	gw.success()
	waitFor[*Connected](t, tc.events)
	return gw
}

// result waits for Run to return.
func (tc *testClient) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-tc.done:
		tc.done <- err // for the cleanup
		return err
	case <-time.After(3 * time.Second):
		t.Fatalf("Run did not return")
		return nil
	}
}

func contextWithCleanup(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}
