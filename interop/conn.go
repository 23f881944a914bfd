package interop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// FrameConn is one established connection to the gateway that carries whole frames
// (interop/socket: WebSocket + Noise, handshake done). Close must be safe to call
// concurrently with ReadFrame and WriteFrame and must make both return.
type FrameConn interface {
	ReadFrame(ctx context.Context) ([]byte, error)
	WriteFrame(ctx context.Context, frame []byte) error
	Close() error
}

// Dialer opens a new FrameConn; the bridge passes one wrapping socket.Dial.
type Dialer func(ctx context.Context) (FrameConn, error)

type answerKind uint8

const (
	answerIQ answerKind = iota + 1
	answerMessageAck
)

type pendingKey struct {
	kind answerKind
	id   string
}

// conn is the state of one live connection: the frames, the writers' turn, and the
// requests waiting for an answer on it. When it drops every waiter learns at once
// through ctx.
type conn struct {
	fc       FrameConn
	ctx      context.Context
	cancel   context.CancelCauseFunc
	writeSem chan struct{} // a mutex that a waiting writer can give up on
	// lastFrame is the unix-nano time of the last frame read, for the idle watchdog.
	lastFrame atomic.Int64

	mu      sync.Mutex
	pending map[pendingKey]chan stanza.Node
	dropped bool
	closed  sync.Once
}

func newConn(parent context.Context, fc FrameConn) *conn {
	ctx, cancel := context.WithCancelCause(parent)
	cn := &conn{
		fc:       fc,
		ctx:      ctx,
		cancel:   cancel,
		writeSem: make(chan struct{}, 1),
		pending:  make(map[pendingKey]chan stanza.Node),
	}
	cn.touch()
	return cn
}

func (cn *conn) touch() { cn.lastFrame.Store(time.Now().UnixNano()) }

func (cn *conn) sinceLastFrame() time.Duration {
	return time.Since(time.Unix(0, cn.lastFrame.Load()))
}

// drop ends the connection for cause; the first cause wins.
func (cn *conn) drop(cause error) {
	cn.mu.Lock()
	cn.dropped = true
	cn.pending = nil
	cn.mu.Unlock()
	cn.cancel(cause)
	cn.closed.Do(func() { _ = cn.fc.Close() })
}

// cause is why the connection dropped, nil while it is live.
func (cn *conn) cause() error {
	if cn.ctx.Err() == nil {
		return nil
	}
	return context.Cause(cn.ctx)
}

// expect registers interest in an answer before the request is written, so that an
// answer racing the write cannot be missed.
func (cn *conn) expect(key pendingKey) (chan stanza.Node, error) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.dropped {
		return nil, ErrNotConnected
	}
	if _, dup := cn.pending[key]; dup {
		return nil, fmt.Errorf("%w (id %q)", ErrAnswerPending, key.id)
	}
	ch := make(chan stanza.Node, 1)
	cn.pending[key] = ch
	return ch, nil
}

func (cn *conn) forget(key pendingKey) {
	cn.mu.Lock()
	delete(cn.pending, key)
	cn.mu.Unlock()
}

// resolve hands an answer to its waiter; false when nobody waits for it.
func (cn *conn) resolve(key pendingKey, n stanza.Node) bool {
	cn.mu.Lock()
	ch, ok := cn.pending[key]
	delete(cn.pending, key)
	cn.mu.Unlock()
	if ok {
		ch <- n
	}
	return ok
}

// await waits for the answer registered with expect. A timeout drops the connection:
// an unanswered request means the connection is dead (PROTOCOL.md section 3.1).
func (cn *conn) await(ctx context.Context, key pendingKey, ch chan stanza.Node, timeout time.Duration, timeoutErr error) (stanza.Node, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case n := <-ch:
		return n, nil
	case <-cn.ctx.Done():
		// The answer may have arrived just before the drop.
		select {
		case n := <-ch:
			return n, nil
		default:
		}
		return stanza.Node{}, ErrDisconnected
	case <-ctx.Done():
		cn.forget(key)
		return stanza.Node{}, ctx.Err()
	case <-timer.C:
		cn.forget(key)
		cn.drop(timeoutErr)
		return stanza.Node{}, timeoutErr
	}
}

// write sends one stanza. A failed write leaves the stream in an unknown state (a
// frame may be half written), so it drops the connection.
func (cn *conn) write(ctx context.Context, n stanza.Node) error {
	frame, err := stanza.Marshal(n)
	if err != nil {
		return fmt.Errorf("failed to encode %s: %w", n, err)
	}
	select {
	case cn.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-cn.ctx.Done():
		return ErrNotConnected
	}
	defer func() { <-cn.writeSem }()
	if err := ctx.Err(); err != nil {
		return err
	}
	if cn.ctx.Err() != nil {
		return ErrNotConnected
	}
	if err := cn.fc.WriteFrame(ctx, frame); err != nil {
		err = fmt.Errorf("failed to write %s: %w", n, err)
		cn.drop(err)
		return err
	}
	return nil
}

// read returns the next frame, decoded.
func (cn *conn) read(ctx context.Context) (stanza.Node, error) {
	frame, err := cn.fc.ReadFrame(ctx)
	if err != nil {
		if cause := cn.cause(); cause != nil {
			return stanza.Node{}, cause
		}
		return stanza.Node{}, fmt.Errorf("failed to read frame: %w", err)
	}
	cn.touch()
	n, err := stanza.Unmarshal(frame)
	if err != nil {
		// The decoder's message may quote the frame; keep only the kind and size.
		return stanza.Node{}, &badFrameError{size: len(frame), err: err}
	}
	return n, nil
}

// badFrameError is a frame that did not decode. Its text never holds frame content.
type badFrameError struct {
	size int
	err  error
}

func (e *badFrameError) Error() string {
	kind := "malformed"
	if errors.Is(e.err, stanza.ErrTooLarge) {
		kind = "too large"
	}
	return fmt.Sprintf("%s frame from the gateway (%d bytes)", kind, e.size)
}

func (e *badFrameError) Unwrap() error { return e.err }
