package socket

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/flynn/noise"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waCert"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
)

// gateway is the server-side key material of one test.
type gateway struct {
	rootPub  ed25519.PublicKey
	rootPriv ed25519.PrivateKey
	static   noise.DHKey
	chain    *waCert.CertChain
}

func newGateway(t testing.TB) *gateway {
	t.Helper()
	g := &gateway{}
	g.rootPub, g.rootPriv = mustEd25519(t)
	var err error
	if g.static, err = GenerateStaticKey(); err != nil {
		t.Fatal(err)
	}
	if g.chain, err = GenerateCertChain(g.rootPriv, g.static.Public, testNow.Add(-time.Hour), testNow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *gateway) serverOptions() ServerOptions {
	return ServerOptions{StaticKey: g.static, CertChain: g.chain}
}

func (g *gateway) dialOptions(url string) DialOptions {
	return DialOptions{URL: url, RootKey: g.rootPub, Payload: testPayload(), Now: func() time.Time { return testNow }}
}

func testPayload() *waWa6.ClientPayload {
	return &waWa6.ClientPayload{
		Username: proto.Uint64(491701234567),
		Device:   proto.Uint32(0),
		Product:  waWa6.ClientPayload_INTEROP.Enum(),
		InteropData: &waWa6.ClientPayload_InteropData{
			AccountID:          proto.Uint64(42),
			Token:              []byte("secret-user-token"),
			EnableReadReceipts: proto.Bool(true),
			ClientIP:           proto.String("192.0.2.7"),
		},
	}
}

// serve runs handler at Path on a loopback test server and returns its ws:// URL.
func serve(t testing.TB, handler http.HandlerFunc) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(Path, handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + Path
}

type acceptResult struct {
	conn    *Conn
	payload *waWa6.ClientPayload
	err     error
}

// serveAccept serves Accept and hands every outcome to the test. Connections stay
// usable after the handler returns because the WebSocket has hijacked them.
func serveAccept(t testing.TB, opts ServerOptions) (string, <-chan acceptResult) {
	t.Helper()
	results := make(chan acceptResult, 4)
	url := serve(t, func(w http.ResponseWriter, r *http.Request) {
		conn, payload, err := Accept(r.Context(), w, r, opts)
		if conn != nil {
			t.Cleanup(func() { _ = conn.CloseNow() })
		}
		results <- acceptResult{conn, payload, err}
	})
	return url, results
}

func waitResult(t testing.TB, results <-chan acceptResult) acceptResult {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("server never finished the handshake")
		return acceptResult{}
	}
}

// connect runs a successful handshake and returns both ends.
func connect(t testing.TB) (client, server *Conn) {
	t.Helper()
	g := newGateway(t)
	url, results := serveAccept(t, g.serverOptions())
	client, err := Dial(context.Background(), g.dialOptions(url))
	if err != nil {
		t.Fatalf("failed to dial: %v", err)
	}
	t.Cleanup(func() { _ = client.CloseNow() })
	res := waitResult(t, results)
	if res.err != nil {
		t.Fatalf("server failed the handshake: %v", res.err)
	}
	return client, res.conn
}

func TestHandshakePayloadRoundTrip(t *testing.T) {
	g := newGateway(t)
	url, results := serveAccept(t, g.serverOptions())
	client, err := Dial(context.Background(), g.dialOptions(url))
	if err != nil {
		t.Fatalf("failed to dial: %v", err)
	}
	defer client.CloseNow()
	res := waitResult(t, results)
	if res.err != nil {
		t.Fatalf("server failed the handshake: %v", res.err)
	}
	if !proto.Equal(res.payload, testPayload()) {
		t.Fatalf("payload changed on the way: got %v", res.payload)
	}
}

func TestFramesBothWays(t *testing.T) {
	client, server := connect(t)
	ctx := context.Background()
	sizes := []int{0, 1, 100, 70_000, MaxFrameSize}
	for _, dir := range []struct {
		name     string
		from, to *Conn
	}{{"client to server", client, server}, {"server to client", server, client}} {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s %d bytes", dir.name, size), func(t *testing.T) {
				frame := randomBytes(t, size)
				errc := make(chan error, 1)
				go func() { errc <- dir.from.WriteFrame(ctx, frame) }()
				got, err := dir.to.ReadFrame(ctx)
				if err != nil {
					t.Fatalf("failed to read: %v", err)
				}
				if err := <-errc; err != nil {
					t.Fatalf("failed to write: %v", err)
				}
				if !bytes.Equal(got, frame) {
					t.Fatalf("frame changed: got %d bytes, want %d", len(got), len(frame))
				}
			})
		}
	}
}

// TestConcurrentWriters checks that parallel writers cannot put frames on the wire
// out of nonce order, which the reader would see as decryption failures.
func TestConcurrentWriters(t *testing.T) {
	client, server := connect(t)
	ctx := context.Background()
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := client.WriteFrame(ctx, fmt.Appendf(nil, "%d/%d", w, i)); err != nil {
					t.Errorf("failed to write: %v", err)
					return
				}
			}
		})
	}
	seen := make(map[string]bool)
	for range writers * each {
		frame, err := server.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("failed to read after %d frames: %v", len(seen), err)
		}
		seen[string(frame)] = true
	}
	wg.Wait()
	if len(seen) != writers*each {
		t.Fatalf("got %d distinct frames, want %d", len(seen), writers*each)
	}
}

func TestWriteRefusesOversizedFrame(t *testing.T) {
	client, server := connect(t)
	ctx := context.Background()
	if err := client.WriteFrame(ctx, make([]byte, MaxFrameSize+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("want ErrFrameTooLarge, got %v", err)
	}
	// Nothing was sent and the nonce did not move: the next frame still decrypts.
	if err := client.WriteFrame(ctx, []byte("after")); err != nil {
		t.Fatalf("failed to write after a refusal: %v", err)
	}
	got, err := server.ReadFrame(ctx)
	if err != nil || string(got) != "after" {
		t.Fatalf("want the next frame, got %q, %v", got, err)
	}
}

func TestReadRefusesOversizedFrame(t *testing.T) {
	client, server := connect(t)
	ctx := context.Background()
	// A misbehaving peer: encrypt past the limit by hand, as WriteFrame would refuse.
	ciphertext, err := client.send.Encrypt(nil, nil, make([]byte, MaxFrameSize+1))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.ws.Write(ctx, websocket.MessageBinary, ciphertext); err != nil {
		t.Fatalf("failed to send: %v", err)
	}
	if _, err := server.ReadFrame(ctx); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("want ErrFrameTooLarge, got %v", err)
	}
	if _, err := server.ReadFrame(ctx); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("read side must stay dead, got %v", err)
	}
	// The gateway can still say why before it closes (PROTOCOL.md section 3: 413).
	if err := server.WriteFrame(ctx, []byte(`<stream:error code="413"/>`)); err != nil {
		t.Fatalf("failed to write after a refused read: %v", err)
	}
	got, err := client.ReadFrame(ctx)
	if err != nil || !bytes.Contains(got, []byte("413")) {
		t.Fatalf("client did not get the refusal: %q, %v", got, err)
	}
}

func TestReadRefusesTamperedFrame(t *testing.T) {
	client, server := connect(t)
	ctx := context.Background()
	ciphertext, err := client.send.Encrypt(nil, nil, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	ciphertext[0] ^= 1
	if err := client.ws.Write(ctx, websocket.MessageBinary, ciphertext); err != nil {
		t.Fatalf("failed to send: %v", err)
	}
	if _, err := server.ReadFrame(ctx); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("want ErrDecrypt, got %v", err)
	}
}

func TestCloseEndsPeerRead(t *testing.T) {
	client, server := connect(t)
	// The closing handshake needs the peer to be reading, as its read loop would be.
	errc := make(chan error, 1)
	go func() {
		_, err := server.ReadFrame(context.Background())
		errc <- err
	}()
	if err := client.Close(); err != nil {
		t.Fatalf("failed to close: %v", err)
	}
	if err := <-errc; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("want a normal closure, got %v", err)
	}
}

func BenchmarkFrameRoundTrip(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, MaxFrameSize} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			client, server := connect(b)
			ctx := context.Background()
			frame := randomBytes(b, size)
			b.SetBytes(int64(size))
			for b.Loop() {
				errc := make(chan error, 1)
				go func() { errc <- client.WriteFrame(ctx, frame) }()
				if _, err := server.ReadFrame(ctx); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
