package simuser

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
)

func TestMain(m *testing.M) {
	signal.RouteLibraryLogs(zerolog.Nop())
	os.Exit(m.Run())
}

const (
	integratorID = 1
	waitLong     = 10 * time.Second       // how long something expected may take
	waitShort    = 500 * time.Millisecond // how long "nothing arrives" is watched
)

// provider is a fake third-party provider: it accepts every login token, and serves
// media blobs only to the media proxy's signed requests.
type provider struct {
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	blobs  map[string][]byte
}

func newProvider(t testing.TB) *provider {
	p := &provider{secret: []byte("0123456789abcdef0123456789abcdef"), blobs: map[string][]byte{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/_interop/v1/auth":
			_ = json.NewEncoder(w).Encode(map[string]any{"valid": true, "expires_at": time.Now().Add(time.Hour).Unix()})
		case r.URL.Path == "/_interop/v1/push":
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodGet:
			if err := callback.VerifyMediaFetch(r, p.secret, time.Now()); err != nil {
				http.Error(w, "bad signature", http.StatusUnauthorized)
				return
			}
			p.mu.Lock()
			blob, ok := p.blobs[r.URL.Path]
			p.mu.Unlock()
			if !ok {
				http.NotFound(w, r)
				return
			}
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) host(path string, blob []byte) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blobs[path] = blob
	return p.srv.URL + path
}

// env is a gateway with media hosts, proxy and simulated users over one database.
type env struct {
	t        testing.TB
	db       *dbutil.Database
	gwCfg    gateway.Config
	gw       *gateway.Gateway
	gwSrv    *httptest.Server
	root     ed25519.PublicKey
	host     *media.Host
	hostSrv  *httptest.Server
	prov     *provider
	mgr      *Manager
	mediaDir string
	memory   bool
}

func newEnv(t testing.TB) *env { return newEnvOn(t, sqltest.SQLite(t), false) }

// newEnvOn sets up everything on db; memory keeps the Signal state in memory.
func newEnvOn(t testing.TB, db *dbutil.Database, memory bool) *env {
	t.Helper()
	e := &env{t: t, db: db, prov: newProvider(t), mediaDir: t.TempDir(), memory: memory}
	rootPub, rootPriv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	static, err := socket.GenerateStaticKey()
	must(t, err)
	chain, err := socket.GenerateCertChain(rootPriv, static.Public, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	must(t, err)
	e.root = rootPub
	e.host, err = media.NewHost(context.Background(), media.HostConfig{Dir: t.TempDir(), DB: db, Scheme: "http", Log: zerolog.Nop()})
	must(t, err)
	e.hostSrv = httptest.NewServer(e.host)
	t.Cleanup(e.hostSrv.Close)
	e.host.SetHosts([]string{strings.TrimPrefix(e.hostSrv.URL, "http://")})
	e.gwCfg = gateway.Config{
		Network: gateway.NetworkWhatsApp, Server: jid.ServerGateway, Product: waWa6.ClientPayload_INTEROP,
		StaticKey: static, CertChain: chain,
		Integrators: []gateway.Integrator{{ID: integratorID, Name: "Test", CallbackBase: e.prov.srv.URL,
			MediaOrigin: e.prov.srv.URL, CallbackSecret: e.prov.secret}},
		Limits:    gateway.Limits{PushInterval: 100 * time.Millisecond, ReorderWindow: 200 * time.Millisecond},
		MediaConn: e.host.MediaConn,
	}
	e.open()
	e.gwSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.gw.ServeHTTP(w, r) }))
	t.Cleanup(func() {
		e.gwSrv.CloseClientConnections()
		e.close()
		e.gwSrv.Close()
	})
	return e
}

// open starts a gateway and a Manager on the database.
func (e *env) open() {
	e.t.Helper()
	gw, err := gateway.New(context.Background(), e.gwCfg, e.db, zerolog.Nop())
	must(e.t, err)
	e.gw = gw
	cfg := Config{Gateway: gw, Media: e.host, Proxy: media.NewProxy(media.ProxyConfig{}), DB: e.db,
		MediaDir: e.mediaDir, Log: zerolog.Nop()}
	if !e.memory {
		cfg.Stores = SQLStores(sqlstore.New(e.db, zerolog.Nop()))
	}
	e.mgr, err = New(context.Background(), cfg)
	must(e.t, err)
}

func (e *env) close() {
	if e.mgr != nil {
		_ = e.mgr.Close()
	}
	if e.gw != nil {
		_ = e.gw.Close()
	}
}

// restart closes the Manager and the gateway and opens new ones on the same database.
func (e *env) restart() {
	e.t.Helper()
	e.gwSrv.CloseClientConnections()
	e.close()
	e.open()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	must(e.t, e.mgr.Start(ctx))
}

func ctxLong(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

// user creates a WhatsApp user with devices devices, read receipts on and opted in
// to the test integrator.
func (e *env) user(number string, devices int) jid.JID {
	e.t.Helper()
	u := jid.New(number, jid.ServerGateway)
	jids, err := e.mgr.CreateUser(ctxLong(e.t), u, devices, UserOptions{Gateway: gateway.UserOptions{ReadReceipts: true},
		OptIn: []uint16{integratorID}})
	must(e.t, err)
	if len(jids) != devices || jids[0] != u {
		e.t.Fatalf("CreateUser gave devices %v", jids)
	}
	return u
}

// send sends and fails the test on error.
func (e *env) send(from, to jid.JID, c Content) *Sent {
	e.t.Helper()
	s, err := e.mgr.Send(ctxLong(e.t), from, to, c)
	if err != nil {
		e.t.Fatalf("send %s from %s to %s: %v", c.Kind, from, to, err)
	}
	return s
}

// wait waits for an item of user matching f and match.
func (e *env) wait(user jid.JID, f Filter, what string, match func(Item) bool) Item {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	it, err := e.mgr.WaitFor(ctx, user, f, match)
	if err != nil {
		items, _ := e.mgr.Inbox(context.Background(), user, Filter{})
		e.t.Fatalf("%s never got %s: %v (inbox: %+v)", user, what, err, items)
	}
	return it
}

// waitMsg waits for the message id on one device of user.
func (e *env) waitMsg(dev jid.JID, id string) Item {
	e.t.Helper()
	return e.wait(dev.ToUser(), Filter{Device: dev, ID: id, Kinds: messageKinds}, "message "+id, nil)
}

var messageKinds = []Kind{KindText, KindLocation, KindMedia, KindReaction, KindEdit, KindRevoke, KindError, KindUnknown}

// expectNone fails if an item of user matching f arrives within waitShort.
func (e *env) expectNone(user jid.JID, f Filter, what string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitShort)
	defer cancel()
	if it, err := e.mgr.WaitFor(ctx, user, f, nil); err == nil {
		e.t.Fatalf("%s unexpectedly got %s: %+v", user, what, it)
	}
}

// thirdParty is an interop.Account of the test integrator connected over
// WebSocket+Noise, reporting what it decrypts.
type thirdParty struct {
	jid  jid.JID
	acc  *interop.Account
	msgs chan *interop.DecryptedMessage
}

func (e *env) thirdParty(number string) *thirdParty {
	e.t.Helper()
	own := jid.Interop(integratorID, number)
	acc0, err := memstore.NewAccount(own)
	must(e.t, err)
	n, _ := strconv.ParseUint(number, 10, 64)
	payload := &waWa6.ClientPayload{Username: proto.Uint64(n), Device: proto.Uint32(0), Product: waWa6.ClientPayload_INTEROP.Enum(),
		InteropData: &waWa6.ClientPayload_InteropData{AccountID: proto.Uint64(integratorID), Token: []byte("token"),
			EnableReadReceipts: proto.Bool(true)}}
	tp := &thirdParty{jid: own, msgs: make(chan *interop.DecryptedMessage, 100)}
	ready := make(chan struct{})
	var once sync.Once
	tp.acc, err = interop.NewAccount(interop.AccountConfig{
		Client: interop.Config{Dial: interop.SocketDialer(socket.DialOptions{URL: "ws" + strings.TrimPrefix(e.gwSrv.URL, "http") + socket.Path,
			RootKey: e.root, Payload: payload})},
		Store: memstore.New(acc0),
		Log:   zerolog.Nop(),
		Handler: func(ctx context.Context, evt interop.Event) {
			switch ev := evt.(type) {
			case *interop.Connected:
				once.Do(func() { close(ready) })
			case *interop.IncomingMessage:
				_, _ = tp.acc.HandleMessage(ctx, ev.Node, func(_ context.Context, m *interop.DecryptedMessage) error {
					tp.msgs <- m
					return nil
				})
			case *interop.IncomingReceipt:
				_ = tp.acc.Client().Ack(ctx, ev.Node)
			case *interop.IncomingNotification:
				_ = tp.acc.Client().Ack(ctx, ev.Node)
			}
		},
	})
	must(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tp.acc.Run(ctx)
	}()
	e.t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case <-time.After(waitLong):
		e.t.Fatalf("%s never connected", own)
	}
	return tp
}

func (tp *thirdParty) next(t testing.TB) *interop.DecryptedMessage {
	t.Helper()
	select {
	case m := <-tp.msgs:
		return m
	case <-time.After(waitLong):
		t.Fatalf("%s decrypted nothing", tp.jid)
		return nil
	}
}

func (tp *thirdParty) send(t testing.TB, to jid.JID, msg *waE2E.Message) string {
	t.Helper()
	res, err := tp.acc.SendMessage(ctxLong(t), to, "", msg, interop.SendOptions{})
	must(t, err)
	return res.ID
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}
