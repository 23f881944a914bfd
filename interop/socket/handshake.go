package socket

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/flynn/noise"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waCert"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
)

// DefaultHandshakeTimeout bounds the whole handshake when the options name none, so a
// silent or slow peer cannot hold a connection open.
const DefaultHandshakeTimeout = 20 * time.Second

const (
	dhLen = 32
	// An encrypted static key: the key plus the AES-GCM tag.
	encStaticLen = dhLen + tagLen
	// Handshake messages are capped by Noise at 65,535 bytes; allow the header and
	// the protobuf wrapping on top.
	handshakeReadLimit = noise.MaxMsgLen + 1024
)

// header is sent before the first handshake message and is the Noise prologue, so a
// peer that saw a different header cannot complete the handshake.
var header = []byte{'W', 'A', 6, 3}

// ErrBadHandshake is wrapped by every refusal of a handshake message the peer sent:
// wrong header, not a protobuf, missing parts, wrong lengths, or failed decryption.
var ErrBadHandshake = errors.New("bad handshake message")

var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

// GenerateStaticKey makes a gateway's long-term Noise static key pair.
func GenerateStaticKey() (noise.DHKey, error) {
	key, err := noise.DH25519.GenerateKeypair(rand.Reader)
	if err != nil {
		return noise.DHKey{}, fmt.Errorf("failed to generate static key: %w", err)
	}
	return key, nil
}

// DialOptions configure the provider's side of a connection.
type DialOptions struct {
	// URL of the gateway endpoint, e.g. "wss://gateway.example"+Path.
	URL string
	// RootKey is Meta's root public key; the gateway's chain must lead to it.
	RootKey ed25519.PublicKey
	// Payload identifies the account; it is sent only after the gateway is verified.
	Payload *waWa6.ClientPayload
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
	// HTTPClient and Header are used for the WebSocket upgrade request; both optional.
	HTTPClient *http.Client
	Header     http.Header
	// HandshakeTimeout bounds dialling plus the handshake; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// StaticKey is the client's Noise static key pair. Noise XX needs one, but the
	// gateway identifies the account by its token, not by this key, so when it is
	// empty a fresh pair is made for the connection.
	StaticKey noise.DHKey
}

// Dial connects to the gateway, verifies its certificate chain and logs in with the
// payload. If the chain does not verify, the connection is closed and the error wraps
// ErrUntrustedGateway; the payload (which holds the user's token) is never sent.
func Dial(ctx context.Context, opts DialOptions) (*Conn, error) {
	if len(opts.RootKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("root key has %d bytes, want %d", len(opts.RootKey), ed25519.PublicKeySize)
	}
	if opts.Payload == nil {
		return nil, errors.New("no client payload given")
	}
	payload, err := proto.Marshal(opts.Payload)
	if err != nil {
		return nil, fmt.Errorf("failed to marshal client payload: %w", err)
	}
	static := opts.StaticKey
	if len(static.Public) == 0 && len(static.Private) == 0 {
		if static, err = GenerateStaticKey(); err != nil {
			return nil, err
		}
	} else if len(static.Public) != dhLen || len(static.Private) != dhLen {
		return nil, errors.New("client static key pair is not a 32-byte X25519 pair")
	}
	ctx, cancel := context.WithTimeout(ctx, timeoutOr(opts.HandshakeTimeout))
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, opts.URL, &websocket.DialOptions{
		HTTPClient: opts.HTTPClient,
		HTTPHeader: opts.Header,
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("failed to open websocket (HTTP %d): %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("failed to open websocket: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	conn, err := clientHandshake(ctx, ws, static, payload, func(chain []byte, serverStatic []byte) error {
		var parsed waCert.CertChain
		if err := proto.Unmarshal(chain, &parsed); err != nil {
			return fmt.Errorf("%w: %w", ErrCertChainMalformed, err)
		}
		return VerifyCertChain(&parsed, opts.RootKey, serverStatic, now())
	})
	if err != nil {
		return nil, err
	}
	zerolog.Ctx(ctx).Debug().Msg("Noise handshake with gateway complete")
	return conn, nil
}

// clientHandshake runs the initiator's side over an open WebSocket. verify sees the
// server's payload and proven static key before the client reveals anything of its
// own. On error the WebSocket is closed.
func clientHandshake(ctx context.Context, ws *websocket.Conn, static noise.DHKey, payload []byte, verify func(serverPayload, serverStatic []byte) error) (*Conn, error) {
	conn, code, err := runClientHandshake(ctx, ws, static, payload, verify)
	if err != nil {
		closeAfterFailure(ws, code)
		return nil, err
	}
	return conn, nil
}

func runClientHandshake(ctx context.Context, ws *websocket.Conn, static noise.DHKey, payload []byte, verify func(serverPayload, serverStatic []byte) error) (*Conn, websocket.StatusCode, error) {
	ws.SetReadLimit(handshakeReadLimit)
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   cipherSuite,
		Pattern:       noise.HandshakeXX,
		Initiator:     true,
		Prologue:      header,
		StaticKeypair: static,
	})
	if err != nil {
		return nil, websocket.StatusInternalError, fmt.Errorf("failed to start handshake: %w", err)
	}

	ephemeral, _, _, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return nil, websocket.StatusInternalError, fmt.Errorf("failed to write client hello: %w", err)
	}
	hello, err := proto.Marshal(&waWa6.HandshakeMessage{ClientHello: &waWa6.HandshakeMessage_ClientHello{Ephemeral: ephemeral}})
	if err != nil {
		return nil, websocket.StatusInternalError, fmt.Errorf("failed to marshal client hello: %w", err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, append(bytes.Clone(header), hello...)); err != nil {
		return nil, websocket.StatusInternalError, fmt.Errorf("failed to send client hello: %w", err)
	}

	data, err := readBinary(ctx, ws)
	if err != nil {
		return nil, websocket.StatusProtocolError, fmt.Errorf("failed to read server hello: %w", err)
	}
	serverPayload, err := readServerHello(hs, data)
	if err != nil {
		return nil, websocket.StatusProtocolError, err
	}
	if err := verify(serverPayload, hs.PeerStatic()); err != nil {
		return nil, websocket.StatusPolicyViolation, fmt.Errorf("failed to verify gateway: %w", err)
	}

	finish, send, recv, err := hs.WriteMessage(nil, payload)
	if err != nil {
		return nil, websocket.StatusInternalError, fmt.Errorf("failed to write client finish: %w", err)
	}
	if len(finish) < encStaticLen {
		return nil, websocket.StatusInternalError, errors.New("client finish shorter than an encrypted static key")
	}
	fin, err := proto.Marshal(&waWa6.HandshakeMessage{ClientFinish: &waWa6.HandshakeMessage_ClientFinish{
		Static:  finish[:encStaticLen],
		Payload: finish[encStaticLen:],
	}})
	if err != nil {
		return nil, websocket.StatusInternalError, fmt.Errorf("failed to marshal client finish: %w", err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, fin); err != nil {
		return nil, websocket.StatusInternalError, fmt.Errorf("failed to send client finish: %w", err)
	}
	// flynn/noise hands out the initiator→responder state first.
	return newConn(ws, send, recv), 0, nil
}

// ServerOptions configure the gateway's side of a connection.
type ServerOptions struct {
	// StaticKey is the gateway's Noise static key pair; CertChain must certify its
	// public half.
	StaticKey noise.DHKey
	CertChain *waCert.CertChain
	// HandshakeTimeout bounds the handshake; 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Accept upgrades an HTTP request to the interop WebSocket and runs the gateway's side
// of the handshake. It returns the client's payload unchecked: validating the account
// and its token is the caller's job. On a failed handshake the WebSocket is closed
// (or, if the upgrade itself failed, an HTTP error has been written).
func Accept(ctx context.Context, w http.ResponseWriter, r *http.Request, opts ServerOptions) (*Conn, *waWa6.ClientPayload, error) {
	if len(opts.StaticKey.Public) != dhLen || len(opts.StaticKey.Private) != dhLen {
		return nil, nil, errors.New("server static key pair is not a 32-byte X25519 pair")
	}
	if opts.CertChain == nil {
		return nil, nil, errors.New("no certificate chain given")
	}
	chain, err := proto.Marshal(opts.CertChain)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to marshal certificate chain: %w", err)
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to accept websocket: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeoutOr(opts.HandshakeTimeout))
	defer cancel()
	conn, rawPayload, err := serverHandshake(ctx, ws, opts.StaticKey, chain)
	if err != nil {
		return nil, nil, err
	}
	var payload waWa6.ClientPayload
	if err := proto.Unmarshal(rawPayload, &payload); err != nil {
		closeAfterFailure(ws, websocket.StatusProtocolError)
		return nil, nil, fmt.Errorf("%w: client payload: %w", ErrBadHandshake, err)
	}
	zerolog.Ctx(ctx).Debug().Msg("Noise handshake with client complete")
	return conn, &payload, nil
}

// serverHandshake runs the responder's side over an open WebSocket and returns the
// client's decrypted payload. On error the WebSocket is closed.
func serverHandshake(ctx context.Context, ws *websocket.Conn, static noise.DHKey, serverPayload []byte) (*Conn, []byte, error) {
	conn, payload, code, err := runServerHandshake(ctx, ws, static, serverPayload)
	if err != nil {
		closeAfterFailure(ws, code)
		return nil, nil, err
	}
	return conn, payload, nil
}

func runServerHandshake(ctx context.Context, ws *websocket.Conn, static noise.DHKey, serverPayload []byte) (*Conn, []byte, websocket.StatusCode, error) {
	ws.SetReadLimit(handshakeReadLimit)
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   cipherSuite,
		Pattern:       noise.HandshakeXX,
		Initiator:     false,
		Prologue:      header,
		StaticKeypair: static,
	})
	if err != nil {
		return nil, nil, websocket.StatusInternalError, fmt.Errorf("failed to start handshake: %w", err)
	}

	first, err := readBinary(ctx, ws)
	if err != nil {
		return nil, nil, websocket.StatusProtocolError, fmt.Errorf("failed to read client hello: %w", err)
	}
	if err := readClientHello(hs, first); err != nil {
		return nil, nil, websocket.StatusProtocolError, err
	}

	out, _, _, err := hs.WriteMessage(nil, serverPayload)
	if err != nil {
		// The one input this depends on is the client's ephemeral key: a low-order
		// point makes the DH fail here.
		return nil, nil, websocket.StatusProtocolError, fmt.Errorf("%w: failed to write server hello: %w", ErrBadHandshake, err)
	}
	if len(out) < dhLen+encStaticLen {
		return nil, nil, websocket.StatusInternalError, errors.New("server hello shorter than its keys")
	}
	hello, err := proto.Marshal(&waWa6.HandshakeMessage{ServerHello: &waWa6.HandshakeMessage_ServerHello{
		Ephemeral: out[:dhLen],
		Static:    out[dhLen : dhLen+encStaticLen],
		Payload:   out[dhLen+encStaticLen:],
	}})
	if err != nil {
		return nil, nil, websocket.StatusInternalError, fmt.Errorf("failed to marshal server hello: %w", err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, hello); err != nil {
		return nil, nil, websocket.StatusInternalError, fmt.Errorf("failed to send server hello: %w", err)
	}

	data, err := readBinary(ctx, ws)
	if err != nil {
		return nil, nil, websocket.StatusProtocolError, fmt.Errorf("failed to read client finish: %w", err)
	}
	msg, err := parseHandshakeMessage(data)
	if err != nil {
		return nil, nil, websocket.StatusProtocolError, fmt.Errorf("client finish: %w", err)
	}
	cf := msg.GetClientFinish()
	if cf == nil {
		return nil, nil, websocket.StatusProtocolError, fmt.Errorf("%w: no client finish", ErrBadHandshake)
	}
	if len(cf.GetStatic()) != encStaticLen || len(cf.GetPayload()) < tagLen {
		return nil, nil, websocket.StatusProtocolError, fmt.Errorf("%w: client finish static %d bytes, payload %d bytes", ErrBadHandshake, len(cf.GetStatic()), len(cf.GetPayload()))
	}
	payload, recv, send, err := hs.ReadMessage(nil, concat(cf.GetStatic(), cf.GetPayload()))
	if err != nil {
		return nil, nil, websocket.StatusProtocolError, fmt.Errorf("%w: client finish: %w", ErrBadHandshake, err)
	}
	// flynn/noise hands out the initiator→responder state first, which the responder
	// decrypts with.
	return newConn(ws, send, recv), payload, 0, nil
}

// readClientHello checks the first message (header + ClientHello) and feeds its
// ephemeral key to the responder's handshake state.
func readClientHello(hs *noise.HandshakeState, first []byte) error {
	if !bytes.HasPrefix(first, header) {
		return fmt.Errorf("%w: missing WA header", ErrBadHandshake)
	}
	msg, err := parseHandshakeMessage(first[len(header):])
	if err != nil {
		return fmt.Errorf("client hello: %w", err)
	}
	ephemeral := msg.GetClientHello().GetEphemeral()
	if len(ephemeral) != dhLen {
		return fmt.Errorf("%w: client hello ephemeral has %d bytes", ErrBadHandshake, len(ephemeral))
	}
	if _, _, _, err := hs.ReadMessage(nil, ephemeral); err != nil {
		return fmt.Errorf("%w: client hello: %w", ErrBadHandshake, err)
	}
	return nil
}

// readServerHello checks the ServerHello and returns its decrypted payload (the
// certificate chain, not yet verified).
func readServerHello(hs *noise.HandshakeState, data []byte) ([]byte, error) {
	msg, err := parseHandshakeMessage(data)
	if err != nil {
		return nil, fmt.Errorf("server hello: %w", err)
	}
	sh := msg.GetServerHello()
	if sh == nil {
		return nil, fmt.Errorf("%w: no server hello", ErrBadHandshake)
	}
	if err := checkLengths(sh.GetEphemeral(), sh.GetStatic(), sh.GetPayload()); err != nil {
		return nil, fmt.Errorf("server hello: %w", err)
	}
	payload, _, _, err := hs.ReadMessage(nil, concat(sh.GetEphemeral(), sh.GetStatic(), sh.GetPayload()))
	if err != nil {
		return nil, fmt.Errorf("%w: server hello: %w", ErrBadHandshake, err)
	}
	return payload, nil
}

// readBinary reads one whole handshake-phase WebSocket message.
func readBinary(ctx context.Context, ws *websocket.Conn) ([]byte, error) {
	typ, data, err := ws.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary {
		return nil, fmt.Errorf("%w: %w", ErrBadHandshake, ErrNotBinary)
	}
	return data, nil
}

func parseHandshakeMessage(data []byte) (*waWa6.HandshakeMessage, error) {
	var msg waWa6.HandshakeMessage
	if err := proto.Unmarshal(data, &msg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadHandshake, err)
	}
	return &msg, nil
}

// checkLengths enforces the fixed split of a Noise "e, ee, s, es" message.
func checkLengths(ephemeral, static, payload []byte) error {
	if len(ephemeral) != dhLen || len(static) != encStaticLen || len(payload) < tagLen {
		return fmt.Errorf("%w: ephemeral %d, static %d, payload %d bytes", ErrBadHandshake, len(ephemeral), len(static), len(payload))
	}
	return nil
}

func concat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultHandshakeTimeout
	}
	return d
}

// closeAfterFailure tells the peer why the handshake ended when the connection is
// still open; after a timeout the library has already dropped it.
func closeAfterFailure(ws *websocket.Conn, code websocket.StatusCode) {
	if code == 0 {
		code = websocket.StatusProtocolError
	}
	_ = ws.Close(code, "handshake failed")
}
