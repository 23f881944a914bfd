// Package socket is the transport of PROTOCOL.md section 2, both halves of it: a
// WebSocket carrying a Noise_XX_25519_AESGCM_SHA256 session, with the gateway proving
// its identity by a certificate chain under Meta's root key. Dial is the provider's
// side, Accept the gateway's. After the handshake a Conn moves opaque frames (one
// WebSocket binary message = one Noise transport message = one frame) of at most
// MaxFrameSize plaintext bytes each way.
//
// It knows nothing about what a frame holds: it imports only the waproto packages
// (waWa6, waCert) and never the stanza codec or anything above it.
package socket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/coder/websocket"
	"github.com/flynn/noise"
)

// Path is where the gateway serves the interop WebSocket.
const Path = "/interop/v1"

// MaxFrameSize is the largest frame plaintext, in bytes, either side may send
// (PROTOCOL.md section 3).
const MaxFrameSize = 1 << 20

// tagLen is AES-GCM's tag, added to every Noise transport message.
const tagLen = 16

var (
	// ErrFrameTooLarge refuses a frame over MaxFrameSize. On write nothing was sent and
	// the Conn stays usable; on read the incoming direction is dead (its nonce can no
	// longer be kept in step) but writes still work, so the gateway can answer with
	// <stream:error code="413"/> before closing.
	ErrFrameTooLarge = errors.New("frame larger than 1 MiB")
	// ErrNotBinary is returned when the peer sends a text WebSocket message.
	ErrNotBinary = errors.New("websocket message is not binary")
	// ErrDecrypt means a frame failed authentication: tampering or a broken peer.
	ErrDecrypt = errors.New("failed to decrypt frame")
)

// Conn is an established, encrypted connection. ReadFrame must be called from one
// goroutine at a time; WriteFrame is safe for concurrent use.
type Conn struct {
	ws *websocket.Conn

	readMu  sync.Mutex
	recv    *noise.CipherState
	readErr error

	// writeMu covers encryption and sending together, so that frames reach the wire
	// in nonce order.
	writeMu  sync.Mutex
	send     *noise.CipherState
	writeErr error
}

func newConn(ws *websocket.Conn, send, recv *noise.CipherState) *Conn {
	// The WebSocket library's limit would close the connection at once; ReadFrame
	// enforces MaxFrameSize itself so the caller can still send a 413 first.
	ws.SetReadLimit(-1)
	return &Conn{ws: ws, send: send, recv: recv}
}

// ReadFrame returns the next frame's plaintext. Cancelling ctx closes the connection
// (a WebSocket read cannot be abandoned halfway). After any error the read side is
// dead and every later call returns the same error; close the Conn.
func (c *Conn) ReadFrame(ctx context.Context) ([]byte, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readErr != nil {
		return nil, c.readErr
	}
	frame, err := c.readFrame(ctx)
	if err != nil {
		c.readErr = err
		return nil, err
	}
	return frame, nil
}

func (c *Conn) readFrame(ctx context.Context) ([]byte, error) {
	typ, r, err := c.ws.Reader(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to read frame: %w", err)
	}
	if typ != websocket.MessageBinary {
		return nil, ErrNotBinary
	}
	// Read one byte past the limit to tell "exactly at the limit" from "over it"
	// without ever buffering more than that.
	ciphertext, err := io.ReadAll(io.LimitReader(r, MaxFrameSize+tagLen+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read frame: %w", err)
	}
	if len(ciphertext) > MaxFrameSize+tagLen {
		return nil, ErrFrameTooLarge
	}
	plaintext, err := c.recv.Decrypt(ciphertext[:0], nil, ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	return plaintext, nil
}

// WriteFrame encrypts and sends one frame. A frame over MaxFrameSize is refused with
// ErrFrameTooLarge before anything is sent. After any other error the write side is
// dead and every later call returns the same error.
func (c *Conn) WriteFrame(ctx context.Context, frame []byte) error {
	if len(frame) > MaxFrameSize {
		return ErrFrameTooLarge
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return c.writeErr
	}
	ciphertext, err := c.send.Encrypt(make([]byte, 0, len(frame)+tagLen), nil, frame)
	if err == nil {
		err = c.ws.Write(ctx, websocket.MessageBinary, ciphertext)
	}
	if err != nil {
		// The nonce has moved on even if the message never left, so the peer could not
		// decrypt anything sent after it: the direction is finished.
		c.writeErr = fmt.Errorf("failed to write frame: %w", err)
		return c.writeErr
	}
	return nil
}

// Close closes the connection with a normal closure.
func (c *Conn) Close() error {
	return c.CloseWithStatus(websocket.StatusNormalClosure, "")
}

// CloseWithStatus closes the connection with a WebSocket close code and a short,
// constant reason (at most 123 bytes; never put user content or secrets in it). It
// waits up to a few seconds for the peer to answer the close.
func (c *Conn) CloseWithStatus(code websocket.StatusCode, reason string) error {
	if err := c.ws.Close(code, reason); err != nil {
		return fmt.Errorf("failed to close websocket: %w", err)
	}
	return nil
}

// CloseNow drops the connection without a closing handshake, as a network failure
// would.
func (c *Conn) CloseNow() error {
	if err := c.ws.CloseNow(); err != nil {
		return fmt.Errorf("failed to close websocket: %w", err)
	}
	return nil
}
