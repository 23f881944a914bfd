package gateway

import (
	"context"
	"errors"
	"sync"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// pipeBuffer is how many frames may wait in one direction before the writer blocks.
const pipeBuffer = 256

// errPipeClosed is returned by either end after the pipe was closed.
var errPipeClosed = errors.New("in-process connection closed")

// pipe is the in-process connection of a Meta device: two frame channels and one
// shared closed signal, so closing either end ends both directions.
type pipe struct {
	done chan struct{}
	once sync.Once
}

// pipeEnd is one side of a pipe.
type pipeEnd struct {
	p    *pipe
	in   <-chan []byte
	out  chan<- []byte
	side string
	// limit refuses frames over the protocol's limit on reading; only the gateway's
	// end checks, as Meta's gateway does (it answers 413).
	limit bool
}

var (
	_ interop.FrameConn = (*pipeEnd)(nil)
	_ frameConn         = (*pipeEnd)(nil)
)

// newPipe returns the device's end and the gateway's end.
func newPipe() (client, server *pipeEnd) {
	p := &pipe{done: make(chan struct{})}
	toServer := make(chan []byte, pipeBuffer)
	toClient := make(chan []byte, pipeBuffer)
	client = &pipeEnd{p: p, in: toClient, out: toServer, side: "device"}
	server = &pipeEnd{p: p, in: toServer, out: toClient, side: "gateway", limit: true}
	return client, server
}

// ReadFrame returns the next frame from the other end.
func (e *pipeEnd) ReadFrame(ctx context.Context) ([]byte, error) {
	// Frames written before a close are still delivered, like bytes in a socket
	// buffer; after that the close wins.
	select {
	case f := <-e.in:
		return e.check(f)
	default:
	}
	select {
	case f := <-e.in:
		return e.check(f)
	case <-e.p.done:
		return nil, errPipeClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *pipeEnd) check(f []byte) ([]byte, error) {
	if e.limit && len(f) > stanza.MaxFrameSize {
		return nil, errFrameTooLarge
	}
	return f, nil
}

// WriteFrame sends a copy of frame to the other end. Safe for concurrent use.
func (e *pipeEnd) WriteFrame(ctx context.Context, frame []byte) error {
	select {
	case <-e.p.done:
		return errPipeClosed
	default:
	}
	f := make([]byte, len(frame))
	copy(f, frame)
	select {
	case e.out <- f:
		return nil
	case <-e.p.done:
		return errPipeClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes both directions. Safe to call concurrently with reads and writes.
func (e *pipeEnd) Close() error {
	e.p.once.Do(func() { close(e.p.done) })
	return nil
}

// CloseNow is Close: an in-process pipe has no closing handshake.
func (e *pipeEnd) CloseNow() error { return e.Close() }
