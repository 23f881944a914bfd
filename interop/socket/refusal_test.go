package socket

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/flynn/noise"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waCert"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
)

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDialRefusesUntrustedGateway(t *testing.T) {
	g := newGateway(t)
	_, otherRoot := mustEd25519(t)
	otherStatic, err := GenerateStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	chain := func(root []byte, static []byte, from, until time.Time) []byte {
		c, err := GenerateCertChain(root, static, from, until)
		if err != nil {
			t.Fatal(err)
		}
		return mustMarshal(t, c)
	}
	hour := time.Hour
	tests := []struct {
		name          string
		serverPayload []byte
		want          error
	}{
		{"signed by another root", chain(otherRoot, g.static.Public, testNow.Add(-hour), testNow.Add(hour)), ErrCertSignature},
		{"leaf key is not the server's static", chain(g.rootPriv, otherStatic.Public, testNow.Add(-hour), testNow.Add(hour)), ErrCertKeyMismatch},
		{"expired", chain(g.rootPriv, g.static.Public, testNow.Add(-2*hour), testNow.Add(-hour)), ErrCertExpired},
		{"not yet valid", chain(g.rootPriv, g.static.Public, testNow.Add(hour), testNow.Add(2*hour)), ErrCertNotYetValid},
		{"empty chain", mustMarshal(t, &waCert.CertChain{}), ErrCertChainMalformed},
		{"payload not a protobuf", []byte{0xff, 0xff, 0xff}, ErrCertChainMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverErr := make(chan error, 1)
			url := serve(t, func(w http.ResponseWriter, r *http.Request) {
				ws, err := websocket.Accept(w, r, nil)
				if err != nil {
					serverErr <- err
					return
				}
				conn, payload, err := serverHandshake(r.Context(), ws, g.static, tt.serverPayload)
				if conn != nil {
					_ = conn.CloseNow()
				}
				if err == nil && payload != nil {
					err = errors.New("client sent its payload to an untrusted gateway")
				}
				serverErr <- err
			})
			_, err := Dial(context.Background(), g.dialOptions(url))
			if !errors.Is(err, tt.want) {
				t.Fatalf("want %v, got %v", tt.want, err)
			}
			select {
			case err := <-serverErr:
				// The client must abort, never send ClientFinish with its token.
				if err == nil {
					t.Fatal("server completed a handshake the client should have aborted")
				}
				if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
					t.Fatalf("server should see the client's policy-violation close, got %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("server never saw the client abort")
			}
		})
	}
}

func TestServerRefusesMalformedClientPayload(t *testing.T) {
	g := newGateway(t)
	url, results := serveAccept(t, g.serverOptions())
	ws, _, err := websocket.Dial(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	static, err := GenerateStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	accept := func(_, _ []byte) error { return nil }
	conn, err := clientHandshake(context.Background(), ws, static, []byte{0xff, 0xff, 0xff}, accept)
	if err != nil {
		t.Fatalf("client side of the handshake failed: %v", err)
	}
	// Read while the server refuses, so its close handshake is answered at once.
	readErr := make(chan error, 1)
	go func() {
		_, err := conn.ReadFrame(context.Background())
		readErr <- err
	}()
	res := waitResult(t, results)
	if !errors.Is(res.err, ErrBadHandshake) || res.payload != nil {
		t.Fatalf("want ErrBadHandshake and no payload, got %v, %v", res.payload, res.err)
	}
	if err := <-readErr; websocket.CloseStatus(err) != websocket.StatusProtocolError {
		t.Fatalf("client should see a protocol-error close, got %v", err)
	}
}

// rawClient plays the client by hand, for sending what a correct client never would.
type rawClient struct {
	ws *websocket.Conn
	hs *noise.HandshakeState
}

func newRawClient(t *testing.T, url string) *rawClient {
	t.Helper()
	ws, _, err := websocket.Dial(context.Background(), url, nil)
	if err != nil {
		t.Fatalf("failed to dial: %v", err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	static, err := GenerateStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: cipherSuite, Pattern: noise.HandshakeXX, Initiator: true,
		Prologue: header, StaticKeypair: static,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rawClient{ws: ws, hs: hs}
}

func (c *rawClient) send(t *testing.T, typ websocket.MessageType, data []byte) {
	t.Helper()
	if err := c.ws.Write(context.Background(), typ, data); err != nil {
		t.Fatalf("failed to send: %v", err)
	}
}

func (c *rawClient) hello(t *testing.T) []byte {
	t.Helper()
	e, _, _, err := c.hs.WriteMessage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(header), mustMarshal(t, &waWa6.HandshakeMessage{ClientHello: &waWa6.HandshakeMessage_ClientHello{Ephemeral: e}})...)
}

// helloRoundTrip does the first two handshake messages correctly.
func (c *rawClient) helloRoundTrip(t *testing.T) {
	t.Helper()
	c.send(t, websocket.MessageBinary, c.hello(t))
	_, data, err := c.ws.Read(context.Background())
	if err != nil {
		t.Fatalf("failed to read server hello: %v", err)
	}
	if _, err := readServerHello(c.hs, data); err != nil {
		t.Fatalf("bad server hello: %v", err)
	}
}

func finish(t *testing.T, static, payload []byte) []byte {
	return mustMarshal(t, &waWa6.HandshakeMessage{ClientFinish: &waWa6.HandshakeMessage_ClientFinish{Static: static, Payload: payload}})
}

func TestServerRefusesBadHandshake(t *testing.T) {
	helloWith := func(t *testing.T, e []byte) []byte {
		return append(bytes.Clone(header), mustMarshal(t, &waWa6.HandshakeMessage{ClientHello: &waWa6.HandshakeMessage_ClientHello{Ephemeral: e}})...)
	}
	tests := []struct {
		name   string
		script func(t *testing.T, c *rawClient)
	}{
		{"wrong header", func(t *testing.T, c *rawClient) {
			msg := c.hello(t)
			msg[3] = 2
			c.send(t, websocket.MessageBinary, msg)
		}},
		{"shorter than the header", func(t *testing.T, c *rawClient) {
			c.send(t, websocket.MessageBinary, []byte("WA"))
		}},
		{"header without a hello", func(t *testing.T, c *rawClient) {
			c.send(t, websocket.MessageBinary, header)
		}},
		{"hello not a protobuf", func(t *testing.T, c *rawClient) {
			c.send(t, websocket.MessageBinary, append(bytes.Clone(header), 0xff, 0xff, 0xff))
		}},
		{"short ephemeral", func(t *testing.T, c *rawClient) {
			c.send(t, websocket.MessageBinary, helloWith(t, make([]byte, 31)))
		}},
		{"low-order ephemeral", func(t *testing.T, c *rawClient) {
			c.send(t, websocket.MessageBinary, helloWith(t, make([]byte, 32)))
		}},
		{"text message", func(t *testing.T, c *rawClient) {
			c.send(t, websocket.MessageText, c.hello(t))
		}},
		{"hello twice", func(t *testing.T, c *rawClient) {
			c.helloRoundTrip(t)
			c.send(t, websocket.MessageBinary, c.hello(t)[len(header):])
		}},
		{"finish with a short static", func(t *testing.T, c *rawClient) {
			c.helloRoundTrip(t)
			c.send(t, websocket.MessageBinary, finish(t, make([]byte, 47), make([]byte, 32)))
		}},
		{"finish with a short payload", func(t *testing.T, c *rawClient) {
			c.helloRoundTrip(t)
			c.send(t, websocket.MessageBinary, finish(t, make([]byte, 48), make([]byte, 15)))
		}},
		{"finish that does not decrypt", func(t *testing.T, c *rawClient) {
			c.helloRoundTrip(t)
			c.send(t, websocket.MessageBinary, finish(t, randomBytes(t, 48), randomBytes(t, 40)))
		}},
		{"finish not a protobuf", func(t *testing.T, c *rawClient) {
			c.helloRoundTrip(t)
			c.send(t, websocket.MessageBinary, []byte{0xff, 0xff})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGateway(t)
			url, results := serveAccept(t, g.serverOptions())
			c := newRawClient(t, url)
			tt.script(t, c)
			// Keep reading so the server's close handshake completes promptly.
			_, _, readErr := c.ws.Read(context.Background())
			res := waitResult(t, results)
			if !errors.Is(res.err, ErrBadHandshake) {
				t.Fatalf("want ErrBadHandshake, got %v", res.err)
			}
			if res.conn != nil || res.payload != nil {
				t.Fatal("refused handshake returned a connection")
			}
			if websocket.CloseStatus(readErr) != websocket.StatusProtocolError {
				t.Fatalf("client should see a protocol-error close, got %v", readErr)
			}
		})
	}
}

func TestServerHandshakeTimeout(t *testing.T) {
	g := newGateway(t)
	opts := g.serverOptions()
	opts.HandshakeTimeout = 200 * time.Millisecond
	url, results := serveAccept(t, opts)
	c := newRawClient(t, url)
	start := time.Now()
	res := waitResult(t, results)
	if res.err == nil || res.conn != nil {
		t.Fatalf("want a timeout error, got %v", res.err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Fatalf("timeout took %s", elapsed)
	}
	if _, _, err := c.ws.Read(context.Background()); err == nil {
		t.Fatal("connection still open after the handshake timed out")
	}
}

func TestDialRefusesBadServerHello(t *testing.T) {
	g := newGateway(t)
	serverHello := func(e, s, p []byte) []byte {
		return mustMarshal(t, &waWa6.HandshakeMessage{ServerHello: &waWa6.HandshakeMessage_ServerHello{Ephemeral: e, Static: s, Payload: p}})
	}
	tests := []struct {
		name  string
		reply []byte
		typ   websocket.MessageType
	}{
		{"not a protobuf", []byte{0xff, 0xff}, websocket.MessageBinary},
		{"no server hello", mustMarshal(t, &waWa6.HandshakeMessage{}), websocket.MessageBinary},
		{"short ephemeral", serverHello(make([]byte, 31), make([]byte, 48), make([]byte, 16)), websocket.MessageBinary},
		{"long static", serverHello(make([]byte, 32), make([]byte, 49), make([]byte, 16)), websocket.MessageBinary},
		{"payload shorter than a tag", serverHello(make([]byte, 32), make([]byte, 48), make([]byte, 15)), websocket.MessageBinary},
		{"does not decrypt", serverHello(randomBytes(t, 32), randomBytes(t, 48), randomBytes(t, 100)), websocket.MessageBinary},
		{"text message", serverHello(randomBytes(t, 32), randomBytes(t, 48), randomBytes(t, 100)), websocket.MessageText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := serve(t, func(w http.ResponseWriter, r *http.Request) {
				ws, err := websocket.Accept(w, r, nil)
				if err != nil {
					return
				}
				defer ws.CloseNow()
				if _, _, err := ws.Read(r.Context()); err != nil {
					return
				}
				if err := ws.Write(r.Context(), tt.typ, tt.reply); err != nil {
					return
				}
				_, _, _ = ws.Read(r.Context())
			})
			_, err := Dial(context.Background(), g.dialOptions(url))
			if !errors.Is(err, ErrBadHandshake) {
				t.Fatalf("want ErrBadHandshake, got %v", err)
			}
		})
	}
}

func TestDialRejectsBadOptions(t *testing.T) {
	g := newGateway(t)
	tests := []struct {
		name string
		edit func(o *DialOptions)
	}{
		{"no root key", func(o *DialOptions) { o.RootKey = nil }},
		{"no payload", func(o *DialOptions) { o.Payload = nil }},
		{"half a static key", func(o *DialOptions) { o.StaticKey = noise.DHKey{Public: make([]byte, 32)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The URL is never contacted: options are checked first.
			opts := g.dialOptions("ws://127.0.0.1:1" + Path)
			tt.edit(&opts)
			if _, err := Dial(context.Background(), opts); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// FuzzReadClientHello feeds arbitrary first messages to a fresh responder: it must
// refuse or accept, never panic.
func FuzzReadClientHello(f *testing.F) {
	f.Add(append(bytes.Clone(header), 0x12, 0x22, 0x0a, 0x20))
	f.Add([]byte("WA\x06\x03\x12\x00"))
	f.Add([]byte{})
	static, err := GenerateStaticKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hs, err := noise.NewHandshakeState(noise.Config{
			CipherSuite: cipherSuite, Pattern: noise.HandshakeXX, Prologue: header, StaticKeypair: static,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := readClientHello(hs, data); err != nil && !errors.Is(err, ErrBadHandshake) {
			t.Fatalf("refusal does not wrap ErrBadHandshake: %v", err)
		}
	})
}

// FuzzReadServerHello does the same for the client's reading of the ServerHello.
func FuzzReadServerHello(f *testing.F) {
	f.Add([]byte{0x1a, 0x00})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		hs, err := noise.NewHandshakeState(noise.Config{
			CipherSuite: cipherSuite, Pattern: noise.HandshakeXX, Initiator: true, Prologue: header,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := hs.WriteMessage(nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := readServerHello(hs, data); err == nil {
			t.Fatal("random bytes passed as an authenticated server hello")
		} else if !errors.Is(err, ErrBadHandshake) {
			t.Fatalf("refusal does not wrap ErrBadHandshake: %v", err)
		}
	})
}
