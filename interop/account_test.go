package interop

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

func TestMain(m *testing.M) {
	signal.RouteLibraryLogs(zerolog.Nop())
	os.Exit(m.Run())
}

var (
	aliceJID = jid.Interop(7, "33612345678")
	bobJID   = jid.MustParse("491701234567@s.whatsapp.net")
	bob1JID  = jid.MustParse("491701234567:1@s.whatsapp.net")
	carolJID = jid.MustParse("1000042@msgr")
	daveJID  = jid.MustParse("33698765432@s.whatsapp.net")
	groupJID = jid.MustParse("491701234567-1700000000@g.us")
)

func textMsg(s string) *waE2E.Message { return &waE2E.Message{Conversation: proto.String(s)} }

// sleepLog replaces the retry policy's sleep: it records the waits and returns at once.
type sleepLog struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepLog) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepLog) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

type delivery struct {
	m      *DecryptedMessage
	failed bool // deliver returned an error for it
}

type handled struct {
	outcome IncomingOutcome
	err     error
}

// testAccount is an Account run against a testGateway, with a Handler that hands every
// message to HandleMessage and records the rest.
type testAccount struct {
	*Account
	jid       jid.JID
	events    chan Event
	delivered chan delivery
	handled   chan handled
	// failDeliver makes the next deliver calls for content fail.
	failDeliver atomic.Int32
	// hook, when set, runs first in deliver with its ctx (the decryption's
	// transaction), like the bridge's own writes.
	hook     atomic.Pointer[func(ctx context.Context, m *DecryptedMessage) error]
	sleeps   *sleepLog
	stopOnce sync.Once
	stopFn   func()
}

// stop ends Run (also done when the test ends).
func (ta *testAccount) stop() { ta.stopOnce.Do(ta.stopFn) }

func startAccount(t testing.TB, gw *testGateway, j jid.JID, mod ...func(*AccountConfig)) *testAccount {
	t.Helper()
	acc, err := memstore.NewAccount(j)
	if err != nil {
		t.Fatal(err)
	}
	return startAccountOn(t, gw, memstore.New(acc), mod...)
}

func startAccountOn(t testing.TB, gw *testGateway, st store.Store, mod ...func(*AccountConfig)) *testAccount {
	t.Helper()
	j := st.Account().JID
	gw.register(j)
	ta := &testAccount{
		jid:       j,
		events:    make(chan Event, 256),
		delivered: make(chan delivery, 256),
		handled:   make(chan handled, 256),
		sleeps:    &sleepLog{},
	}
	cfg := AccountConfig{
		Client: Config{
			Dial:           gw.dialer(j),
			PingInterval:   time.Hour,
			IQTimeout:      3 * time.Second,
			IdleTimeout:    time.Hour,
			ConnectTimeout: 3 * time.Second,
			Backoff:        Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, Jitter: -1},
		},
		Store:   st,
		Handler: ta.handle,
		Retry:   RetryPolicy{Backoff: Backoff{Jitter: -1}, Sleep: ta.sleeps.sleep},
	}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := NewAccount(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ta.Account = a
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	ta.stopFn = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("Run of %s did not return", j)
		}
	}
	t.Cleanup(ta.stop)
	waitEvent[*Connected](t, ta)
	return ta
}

// startNew starts an account that never uploaded keys and waits for the upload.
func startNew(t testing.TB, gw *testGateway, j jid.JID, mod ...func(*AccountConfig)) *testAccount {
	t.Helper()
	ta := startAccount(t, gw, j, mod...)
	if up := waitEvent[*PreKeysUploaded](t, ta); up.Reason != UploadNew || up.Count != signal.PreKeyBatch {
		t.Fatalf("first upload %+v", up)
	}
	return ta
}

func (ta *testAccount) handle(ctx context.Context, evt Event) {
	if m, ok := evt.(*IncomingMessage); ok {
		out, err := ta.HandleMessage(ctx, m.Node, ta.deliver)
		ta.handled <- handled{out, err}
		return
	}
	ta.events <- evt
}

func (ta *testAccount) deliver(ctx context.Context, m *DecryptedMessage) error {
	if h := ta.hook.Load(); h != nil {
		if err := (*h)(ctx, m); err != nil {
			return err
		}
	}
	if m.Message != nil && ta.failDeliver.Add(-1) >= 0 {
		ta.delivered <- delivery{m: m, failed: true}
		return errors.New("bridge database unavailable")
	}
	ta.delivered <- delivery{m: m}
	return nil
}

func waitEvent[T Event](t testing.TB, ta *testAccount) T {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case evt := <-ta.events:
			if e, ok := evt.(T); ok {
				return e
			}
		case <-deadline:
			var zero T
			t.Fatalf("%s: no %T event", ta.jid, zero)
			return zero
		}
	}
}

// nextDelivery waits for the next deliver call.
func (ta *testAccount) nextDelivery(t testing.TB) delivery {
	t.Helper()
	select {
	case d := <-ta.delivered:
		return d
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing delivered", ta.jid)
		return delivery{}
	}
}

// nextHandled waits for the next HandleMessage result.
func (ta *testAccount) nextHandled(t testing.TB) handled {
	t.Helper()
	select {
	case h := <-ta.handled:
		return h
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no message handled", ta.jid)
		return handled{}
	}
}

// receiveText waits for a delivered message and checks its text and sender.
func (ta *testAccount) receiveText(t testing.TB, from jid.JID, want string) *DecryptedMessage {
	t.Helper()
	d := ta.nextDelivery(t)
	if d.m.Undecryptable != nil {
		t.Fatalf("%s: message %s undecryptable: %v", ta.jid, d.m.Info.ID, d.m.Undecryptable.Err)
	}
	if got := d.m.Message.GetConversation(); got != want || d.m.Info.Sender != from {
		t.Fatalf("%s: got %q from %s, want %q from %s", ta.jid, got, d.m.Info.Sender, want, from)
	}
	if h := ta.nextHandled(t); h.err != nil || h.outcome != OutcomeDelivered {
		t.Fatalf("%s: handled %+v", ta.jid, h)
	}
	return d.m
}

func (ta *testAccount) send(t testing.TB, to jid.JID, msg *waE2E.Message) SendResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := ta.SendMessage(ctx, to, "", msg, SendOptions{})
	if err != nil {
		t.Fatalf("%s → %s: %v", ta.jid, to, err)
	}
	return res
}

// vectorPHash is PROTOCOL.md 3.3's rule, written out independently of signal.
func vectorPHash(devices ...jid.JID) string {
	strs := make([]string, len(devices))
	for i, d := range devices {
		strs[i] = d.String()
	}
	slices.Sort(strs)
	h := sha256.New()
	for _, s := range strs {
		h.Write([]byte(s))
	}
	return "2:" + base64.StdEncoding.EncodeToString(h.Sum(nil))[:6]
}

// encTypes lists the enc types of a stanza addressed to dev.
func encTypesFor(n stanza.Node, dev jid.JID) []string {
	var out []string
	if parts, ok := n.Child("participants"); ok {
		for _, to := range parts.ChildrenByTag("to") {
			if to.Attr("jid") == dev.String() {
				for _, e := range to.ChildrenByTag("enc") {
					out = append(out, e.Attr("type"))
				}
			}
		}
	}
	return out
}

func lastSent(t testing.TB, gw *testGateway) stanza.Node {
	t.Helper()
	sent := gw.sentMessages()
	if len(sent) == 0 {
		t.Fatal("nothing sent")
	}
	return sent[len(sent)-1]
}

func TestExchangeBothWays(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)

	res := alice.send(t, bobJID, textMsg("hello bob"))
	first := lastSent(t, gw)
	if got := encTypesFor(first, bobJID); !slices.Equal(got, []string{"pkmsg"}) {
		t.Fatalf("first message encs %v, want pkmsg", got)
	}
	if first.Attr("phash") != vectorPHash(bobJID) || first.Attr("type") != "text" || first.Attr("id") != res.ID {
		t.Fatalf("first message attrs %v", first.Attrs)
	}
	if !slices.Equal(res.Devices, []jid.JID{bobJID}) || res.Attempts != 1 || res.Timestamp.IsZero() {
		t.Fatalf("result %+v", res)
	}
	m := bob.receiveText(t, aliceJID, "hello bob")
	if m.Info.ID != res.ID || m.Info.Chat != aliceJID || m.EncType != signal.TypePreKeyMessage || m.Info.IsGroup {
		t.Fatalf("bob got %+v", m)
	}

	bob.send(t, aliceJID, textMsg("hi alice"))
	if got := encTypesFor(lastSent(t, gw), aliceJID); !slices.Equal(got, []string{"msg"}) {
		t.Fatalf("reply encs %v, want msg (bob's session came from alice's pkmsg)", got)
	}
	alice.receiveText(t, bobJID, "hi alice")

	alice.send(t, bobJID, textMsg("and again"))
	if got := encTypesFor(lastSent(t, gw), bobJID); !slices.Equal(got, []string{"msg"}) {
		t.Fatalf("third message encs %v, want msg", got)
	}
	bob.receiveText(t, aliceJID, "and again")

	// Everything was acked; the kept copies are there for retries.
	for _, ta := range []*testAccount{alice, bob} {
		waitUntil(t, func() bool { return gw.pendingFor(ta.jid) == 0 })
	}
	if _, err := alice.Signal().Store().GetSentMessage(context.Background(), bobJID, res.ID); err != nil {
		t.Fatalf("no kept copy: %v", err)
	}
}

func TestMediaAttributes(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	voice := &waE2E.Message{AudioMessage: &waE2E.AudioMessage{Ptt: proto.Bool(true), Mimetype: proto.String("audio/ogg")}}
	res := alice.send(t, bobJID, voice)
	n := lastSent(t, gw)
	parts, _ := n.Child("participants")
	enc, _ := parts.Children()[0].Child("enc")
	if n.Attr("type") != "media" || enc.Attr("mediatype") != "ptt" || enc.Attr("v") != "2" {
		t.Fatalf("voice note stanza %v / enc %v", n.Attrs, enc.Attrs)
	}
	if res.Type != MessageTypeMedia || res.MediaType != MediaPTT {
		t.Fatalf("result %+v", res)
	}
	d := bob.nextDelivery(t)
	if !d.m.Message.GetAudioMessage().GetPtt() || d.m.Info.Type != "media" || d.m.Info.MediaType != "ptt" {
		t.Fatalf("bob got %+v", d.m)
	}
}

func TestSendInsideDeliverRefused(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	ctx := context.WithValue(context.Background(), inDeliverKey{alice.Account}, true)
	if _, err := alice.SendMessage(ctx, bobJID, "", textMsg("x"), SendOptions{}); !errors.Is(err, ErrInsideDeliver) {
		t.Fatalf("send inside deliver: %v", err)
	}
	if _, err := alice.SendGroupMessage(ctx, groupJID, []jid.JID{bobJID}, "", textMsg("x"), SendOptions{}); !errors.Is(err, ErrInsideDeliver) {
		t.Fatalf("group send inside deliver: %v", err)
	}
	if err := alice.ResetGroupSenderKey(ctx, groupJID); !errors.Is(err, ErrInsideDeliver) {
		t.Fatalf("sender key reset inside deliver: %v", err)
	}
	if _, err := alice.HandleMessage(ctx, stanza.Node{Tag: "message"}, nil); !errors.Is(err, ErrInsideDeliver) {
		t.Fatalf("HandleMessage inside deliver: %v", err)
	}
}

func TestKeyLocks(t *testing.T) {
	l := newKeyLocks()
	ctx, unlock := l.lock(context.Background(), "b", "a", "b")
	// Reentrant for the holder's ctx.
	_, unlock2 := l.lock(ctx, "a")
	unlock2()
	got := make(chan struct{})
	go func() {
		_, u := l.lock(context.Background(), "a")
		u()
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a second holder got the lock")
	case <-time.After(20 * time.Millisecond):
	}
	unlock()
	<-got
	if l.size() != 0 {
		t.Fatalf("%d locks left", l.size())
	}
}
