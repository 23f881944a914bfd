package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	icb "github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/callback"
)

func TestMain(m *testing.M) {
	signal.RouteLibraryLogs(zerolog.Nop())
	os.Exit(m.Run())
}

const (
	integratorID = 1
	waitShort    = 300 * time.Millisecond // how long "nothing arrives" is watched
	waitLong     = 5 * time.Second        // how long something expected may take
)

// clock is the gateway's adjustable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// provider is a fake third-party provider: it checks the gateway's signatures and
// answers auth and push callbacks.
type provider struct {
	srv    *httptest.Server
	secret []byte

	mu        sync.Mutex
	tokens    map[string]string // account JID → valid token
	expiresAt int64
	down      bool
	pushes    chan pushCall
	badSigs   int
}

type pushCall struct {
	JID     string `json:"jid"`
	Pending int    `json:"pending"`
}

func newProvider(t testing.TB, clk *clock) *provider {
	p := &provider{secret: []byte("0123456789abcdef0123456789abcdef"), tokens: map[string]string{},
		pushes: make(chan pushCall, 100)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := icb.Verify(p.secret, r.Header.Get(icb.HeaderTimestamp), r.Header.Get(icb.HeaderSignature),
			body, clk.Now()); err != nil {
			p.mu.Lock()
			p.badSigs++
			p.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.down {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		switch r.URL.Path {
		case callback.AuthPath:
			var req struct{ JID, Token string }
			_ = json.Unmarshal(body, &req)
			if want, ok := p.tokens[req.JID]; !ok || want != req.Token {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_ = json.NewEncoder(w).Encode(callback.AuthAnswer{Valid: true, ExpiresAt: p.expiresAt})
		case callback.PushPath:
			var req pushCall
			_ = json.Unmarshal(body, &req)
			p.pushes <- req
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

func (p *provider) setExpires(t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expiresAt = t.Unix()
}

func (p *provider) badSigCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.badSigs
}

func (p *provider) setToken(account jid.JID, token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[account.String()] = token
}

// env is one gateway under test with its provider, on SQLite unless told otherwise.
type env struct {
	t    testing.TB
	db   *dbutil.Database
	cfg  Config
	gw   atomic.Pointer[Gateway]
	srv  *httptest.Server
	root ed25519.PublicKey
	prov *provider
	clk  *clock
}

func newEnv(t testing.TB, opts ...func(*Config)) *env {
	return newEnvOn(t, sqltest.SQLite(t), opts...)
}

func newEnvOn(t testing.TB, db *dbutil.Database, opts ...func(*Config)) *env {
	t.Helper()
	clk := &clock{now: time.Unix(time.Now().Unix(), 0)}
	e := &env{t: t, db: db, clk: clk, prov: newProvider(t, clk)}
	rootPub, rootPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	static, err := socket.GenerateStaticKey()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := socket.GenerateCertChain(rootPriv, static.Public, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.root = rootPub
	e.cfg = Config{
		Network: NetworkWhatsApp, Server: jid.ServerGateway, Product: waWa6.ClientPayload_INTEROP,
		StaticKey: static, CertChain: chain,
		Integrators: []Integrator{
			{ID: integratorID, Name: "Test", CallbackBase: e.prov.srv.URL, CallbackSecret: e.prov.secret},
			{ID: 2, Name: "Other", CallbackBase: e.prov.srv.URL, CallbackSecret: e.prov.secret},
		},
		Limits: Limits{IdleTimeout: 10 * time.Second, PushInterval: 100 * time.Millisecond, ReorderWindow: 300 * time.Millisecond,
			HandshakeTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second},
		MediaConn: func(jid.JID) (string, time.Duration, []string) {
			return "media-auth", time.Hour, []string{"mmg.test:8443"}
		},
		Now: clk.Now,
	}
	for _, o := range opts {
		o(&e.cfg)
	}
	e.start()
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.gw.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		e.srv.CloseClientConnections()
		_ = e.gw.Load().Close()
		e.srv.Close()
	})
	return e
}

func (e *env) start() {
	e.t.Helper()
	gw, err := New(context.Background(), e.cfg, e.db, zerolog.Nop())
	if err != nil {
		e.t.Fatal(err)
	}
	e.gw.Store(gw)
}

// restart closes the gateway and opens a new one on the same database.
func (e *env) restart() {
	e.t.Helper()
	if err := e.g().Close(); err != nil {
		e.t.Fatal(err)
	}
	e.start()
}

func (e *env) g() *Gateway { return e.gw.Load() }

func (e *env) url() string { return "ws" + strings.TrimPrefix(e.srv.URL, "http") + socket.Path }

// payload is a third-party ClientPayload for number with a registered token.
func (e *env) payload(number string) *waWa6.ClientPayload {
	user, err := strconv.ParseUint(number, 10, 64)
	if err != nil {
		e.t.Fatal(err)
	}
	token := "token-" + number
	e.prov.setToken(jid.Interop(integratorID, number), token)
	return &waWa6.ClientPayload{
		Username: proto.Uint64(user), Device: proto.Uint32(0), Product: waWa6.ClientPayload_INTEROP.Enum(),
		InteropData: &waWa6.ClientPayload_InteropData{AccountID: proto.Uint64(integratorID), Token: []byte(token),
			EnableReadReceipts: proto.Bool(true)},
	}
}

// dialRaw opens a third-party connection and returns it with its first stanza.
func (e *env) dialRaw(p *waWa6.ClientPayload) (*rawClient, stanza.Node) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	conn, err := socket.Dial(ctx, socket.DialOptions{URL: e.url(), RootKey: e.root, Payload: p})
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	c := newRawClient(e.t, conn)
	return c, c.next()
}

// connect logs a third-party account in and expects <success>.
func (e *env) connect(number string) *rawClient {
	e.t.Helper()
	c, first := e.dialRaw(e.payload(number))
	if first.Tag != "success" {
		e.t.Fatalf("login of %s: got %s, want <success>", number, first)
	}
	c.jid = jid.Interop(integratorID, number)
	c.expectOffline()
	return c
}

// connectDevice connects a Meta device in-process and expects <success>.
func (e *env) connectDevice(device jid.JID) *rawClient {
	e.t.Helper()
	fc, err := e.g().ConnectDevice(context.Background(), device)
	if err != nil {
		e.t.Fatalf("connect %s: %v", device, err)
	}
	c := newRawClient(e.t, fc)
	c.jid = device
	if first := c.next(); first.Tag != "success" {
		e.t.Fatalf("device %s: got %s, want <success>", device, first)
	}
	c.expectOffline()
	return c
}

// metaUser creates a Meta user opted in to the test integrator, connects device 0 and
// uploads its keys.
func (e *env) metaUser(number string, opts UserOptions) (jid.JID, *rawClient) {
	e.t.Helper()
	u := jid.New(number, jid.ServerGateway)
	if err := e.g().CreateUser(context.Background(), u, opts); err != nil {
		e.t.Fatal(err)
	}
	if err := e.g().SetOptIn(context.Background(), u, integratorID, true); err != nil {
		e.t.Fatal(err)
	}
	c := e.connectDevice(u)
	c.uploadKeys(5)
	return u, c
}

// account connects a third-party account and uploads its keys.
func (e *env) account(number string) *rawClient {
	e.t.Helper()
	c := e.connect(number)
	c.uploadKeys(5)
	return c
}

// rawClient speaks stanzas over one connection, for tests that check the wire.
type rawClient struct {
	t       testing.TB
	jid     jid.JID
	fc      interop.FrameConn
	in      chan stanza.Node
	done    chan struct{}
	pending []stanza.Node
	keys    *signal.Manager
}

func newRawClient(t testing.TB, fc interop.FrameConn) *rawClient {
	c := &rawClient{t: t, fc: fc, in: make(chan stanza.Node, 1000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			frame, err := fc.ReadFrame(context.Background())
			if err != nil {
				return
			}
			n, err := stanza.Unmarshal(frame)
			if err != nil {
				t.Errorf("gateway sent an undecodable frame: %v", err)
				return
			}
			c.in <- n
		}
	}()
	t.Cleanup(func() { _ = fc.Close() })
	return c
}

func (c *rawClient) close() { _ = c.fc.Close() }

func (c *rawClient) send(n stanza.Node) {
	c.t.Helper()
	frame, err := stanza.Marshal(n)
	if err != nil {
		c.t.Fatalf("marshal %s: %v", n, err)
	}
	if err := c.fc.WriteFrame(context.Background(), frame); err != nil {
		c.t.Fatalf("write %s: %v", n, err)
	}
}

func (c *rawClient) sendRaw(frame []byte) {
	c.t.Helper()
	if err := c.fc.WriteFrame(context.Background(), frame); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next stanza (pending ones first).
func (c *rawClient) next() stanza.Node {
	c.t.Helper()
	n, ok := c.nextWithin(waitLong)
	if !ok {
		c.t.Fatalf("%s: nothing arrived within %s", c.jid, waitLong)
	}
	return n
}

func (c *rawClient) nextWithin(d time.Duration) (stanza.Node, bool) {
	if len(c.pending) > 0 {
		n := c.pending[0]
		c.pending = c.pending[1:]
		return n, true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case n := <-c.in:
		return n, true
	case <-timer.C:
		return stanza.Node{}, false
	}
}

// waitFor returns the first stanza matching pred; others stay pending.
func (c *rawClient) waitFor(what string, pred func(stanza.Node) bool) stanza.Node {
	c.t.Helper()
	n, ok := c.waitWithin(waitLong, pred)
	if !ok {
		c.t.Fatalf("%s: no %s within %s (pending %v)", c.jid, what, waitLong, c.pending)
	}
	return n
}

func (c *rawClient) waitWithin(d time.Duration, pred func(stanza.Node) bool) (stanza.Node, bool) {
	for i, n := range c.pending {
		if pred(n) {
			c.pending = append(c.pending[:i:i], c.pending[i+1:]...)
			return n, true
		}
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case n := <-c.in:
			if pred(n) {
				return n, true
			}
			c.pending = append(c.pending, n)
		case <-timer.C:
			return stanza.Node{}, false
		}
	}
}

// expectNone fails if a stanza matching pred arrives within waitShort.
func (c *rawClient) expectNone(what string, pred func(stanza.Node) bool) {
	c.t.Helper()
	if n, ok := c.waitWithin(waitShort, pred); ok {
		c.t.Fatalf("%s: unexpected %s: %s %v", c.jid, what, n, n.Attrs)
	}
}

func isTag(tag string) func(stanza.Node) bool {
	return func(n stanza.Node) bool { return n.Tag == tag }
}

func isMessage(id string) func(stanza.Node) bool {
	return func(n stanza.Node) bool { return n.Tag == "message" && n.Attr("id") == id }
}

func isNotification(typ string) func(stanza.Node) bool {
	return func(n stanza.Node) bool { return n.Tag == "notification" && n.Attr("type") == typ }
}

// expectOffline consumes stanzas up to the offline marker and returns its count.
func (c *rawClient) expectOffline() int {
	c.t.Helper()
	n := c.waitFor("offline marker", func(n stanza.Node) bool { _, ok := n.Child("offline"); return n.Tag == "ib" && ok })
	off, _ := n.Child("offline")
	count, err := off.AttrInt("count")
	if err != nil {
		c.t.Fatalf("offline marker without count: %v", n.Attrs)
	}
	return int(count)
}

// expectClosed waits for the connection to end.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitLong):
		c.t.Fatalf("%s: connection still open", c.jid)
	}
}

// iq sends an iq and returns its answer.
func (c *rawClient) iq(n stanza.Node) stanza.Node {
	c.t.Helper()
	n.Attrs = copyAttrs(n.Attrs)
	if n.Attrs["id"] == "" {
		n.Attrs["id"] = interop.NewID()
	}
	if n.Attrs["to"] == "" {
		n.Attrs["to"] = jid.ServerGateway
	}
	c.send(n)
	id := n.Attrs["id"]
	return c.waitFor("iq answer "+id, func(a stanza.Node) bool { return a.Tag == "iq" && a.Attr("id") == id })
}

// iqCode returns the error code of an iq answer (0 for a result).
func iqCode(t testing.TB, answer stanza.Node) int {
	t.Helper()
	if answer.Attr("type") == "result" {
		return 0
	}
	e, ok := answer.Child("error")
	if !ok || answer.Attr("type") != "error" {
		t.Fatalf("iq answer is neither result nor error: %v", answer.Attrs)
	}
	code, _ := strconv.Atoi(e.Attr("code"))
	return code
}

// sendMessage sends a message and returns the gateway's ack.
func (c *rawClient) sendMessage(n stanza.Node) stanza.Node {
	c.t.Helper()
	c.send(n)
	id := n.Attr("id")
	return c.waitFor("message ack "+id, func(a stanza.Node) bool {
		return a.Tag == "ack" && a.Attr("class") == "message" && a.Attr("id") == id
	})
}

// ack acknowledges a delivered stanza.
func (c *rawClient) ack(n stanza.Node) {
	c.t.Helper()
	a, err := interop.BuildAck(n)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(a)
}

// keyManager returns the client's Signal keys, made on first use.
func (c *rawClient) keyManager() *signal.Manager {
	c.t.Helper()
	if c.keys == nil {
		acc, err := memstore.NewAccount(c.jid)
		if err != nil {
			c.t.Fatal(err)
		}
		c.keys = signal.New(memstore.New(acc), zerolog.Nop())
	}
	return c.keys
}

// uploadIQ builds an upload of count fresh one-time prekeys.
func (c *rawClient) uploadIQ(count int) stanza.Node {
	c.t.Helper()
	up, err := c.keyManager().PreKeyUpload(context.Background(), count)
	if err != nil {
		c.t.Fatal(err)
	}
	list := make([]stanza.Node, 0, len(up.PreKeys))
	for _, k := range up.PreKeys {
		n, err := interop.PreKeyNode(interop.PreKey{ID: k.ID, Pub: k.Public})
		if err != nil {
			c.t.Fatal(err)
		}
		list = append(list, n)
	}
	skey, err := interop.SignedPreKeyNode(interop.SignedPreKey{ID: up.SignedPreKey.ID, Pub: up.SignedPreKey.Public,
		Signature: up.SignedPreKey.Signature})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.keyManager().MarkUploaded(context.Background(), up); err != nil {
		c.t.Fatal(err)
	}
	return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "encrypt"}, Content: []stanza.Node{
		interop.RegistrationNode(up.RegistrationID), interop.KeyTypeNode(), interop.IdentityNode(up.IdentityKey),
		{Tag: "list", Content: list}, skey}}
}

func (c *rawClient) uploadKeys(count int) {
	c.t.Helper()
	if code := iqCode(c.t, c.iq(c.uploadIQ(count))); code != 0 {
		c.t.Fatalf("%s: key upload refused with %d", c.jid, code)
	}
}

// msgNode builds a message with one fake ciphertext per device.
func msgNode(id string, to jid.JID, typ string, devices []jid.JID, phash bool) stanza.Node {
	parts := make([]signal.EncryptedPart, 0, len(devices))
	for _, d := range devices {
		parts = append(parts, signal.EncryptedPart{Device: d, Type: signal.TypeMessage, Ciphertext: []byte("ct-" + d.String())})
	}
	m := interop.OutgoingMessage{ID: id, To: to.String(), Content: interop.ContentAttrs{Type: typ}, Parts: parts}
	if phash {
		m.PHash = signal.ParticipantHash(devices)
	}
	return m.Node()
}

// textTo builds a text message to user for the given devices, with phash.
func textTo(id string, user jid.JID, devices ...jid.JID) stanza.Node {
	return msgNode(id, user, "text", devices, true)
}

func ackError(ack stanza.Node) string { return ack.Attr("error") }

func mustNoErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
