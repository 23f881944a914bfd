package interop_test

import (
	"context"
	"crypto/ed25519"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

// The group send of issue 6 against metasim in process: one third-party sender (the
// client library with its Signal state on SQLite or PostgreSQL, over the real
// WebSocket+Noise connection) and 256 simulated WhatsApp users with 2 devices each,
// all opted in, in one group (PROTOCOL.md sections 3.3 and 6).
//
// Sub-benchmarks, per store:
//   - first: the sender's very first message to the group, from a fresh account (a new
//     account and group for each iteration, set up untimed): device lists (usync),
//     prekey bundles for 512 devices in one fetch, 512 new sessions, the sender key
//     distributed to all 512.
//   - cold: a new sender key (Account.ResetGroupSenderKey, untimed) on the existing
//     sessions: one skmsg plus 512 msg encs carrying the distribution.
//   - warm: later messages, the skmsg alone.
//   - after-removal: a member removed (untimed; Account.ChangeGroupParticipants starts
//     a new key), then the message to the 255 remaining users' 510 devices (the member
//     is added back untimed after each iteration).
//
// ns/op (and ms/send) is the whole SendGroupMessage call, which returns after the
// gateway's ack.
// Metrics per send:
//   - client-ms: the sender's own time: from the call until it wrote the message frame
//     (device lists, prekey fetch and sessions for the first message, encryption, the
//     store transaction, encoding), plus after-ack-ms, from the gateway's ack until the
//     call returned (recording which devices now hold the key). ack-ms: from the
//     frame to the ack. metasim acks a group message after it queued it for every
//     device (512 SQLite inserts, while the devices already decrypt on the same 2
//     cores), so this is the simulator's fan-out, not the client's.
//   - deliver-ms: from the call until every member device's delivery receipt reached the
//     sender (a device sends it once it decrypted and stored the message): the
//     deliver-to-all latency, on 2 cores shared by the gateway, 512 simulated devices
//     and the sender.
//   - stanza-B: the message stanza as interop/stanza encodes it, the frame the client
//     writes (Noise adds 16 bytes and the WebSocket header a few more). out-B and in-B:
//     every frame written and read from the call until the message frame was written
//     (the first send's usync and prekey iqs and their answers included).
//   - dist: the sender key distributions.
//   - prekey-ms and usync-ms (first): the round trips of the prekey fetch and of the
//     device list query inside the send.
//   - retries: retry receipts answered (only shown when there were any).

const (
	groupBenchMembers = 256
	groupBenchDevices = 2
	groupBenchWait    = 3 * time.Minute
)

var groupBenchText = &waE2E.Message{Conversation: proto.String("Dinner at eight at the usual place, who is in? Reply here")}

func BenchmarkGroupSend(b *testing.B) {
	sim := startGroupSim(b)
	start := time.Now()
	members, devices := createGroupBenchUsers(b, sim.users)
	b.Logf("%d simulated users with %d devices set up in %s", len(members), len(devices), time.Since(start).Round(time.Millisecond))
	for _, be := range sqltest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			c := sqlstore.New(be.Open(b), zerolog.Nop())
			if err := c.Upgrade(context.Background()); err != nil {
				b.Fatal(err)
			}
			gb := &groupBench{sim: sim, store: c, members: members, devices: devices}
			b.Run("first", gb.benchFirst)

			s := gb.startSender(b)
			s.createGroup(b, members)
			gb.quiesce(b, s)
			// The sessions and the key, untimed: the first send is measured above.
			s.send(b, members, devices, false)
			gb.quiesce(b, s)
			b.Run("cold", func(b *testing.B) {
				gb.run(b, s, func() []jid.JID {
					if err := s.acc.ResetGroupSenderKey(context.Background(), s.group); err != nil {
						b.Fatal(err)
					}
					return members
				}, nil)
			})
			b.Run("warm", func(b *testing.B) {
				gb.run(b, s, func() []jid.JID { return members }, nil)
			})
			b.Run("after-removal", func(b *testing.B) {
				gone := members[len(members)-1]
				rest := members[:len(members)-1]
				gb.run(b, s, func() []jid.JID {
					changeMembers(b, s, interop.GroupRemove, gone)
					return rest
				}, func() {
					changeMembers(b, s, interop.GroupAdd, gone)
				})
			})
		})
	}
}

// groupSim is metasim as shipped, in process: metasim.New with the default config
// (its database a SQLite file in the data dir, the simulated devices' Signal state in
// it), the WhatsApp gateway's limits raised only where the benchmark needs it.
type groupSim struct {
	gw       *gateway.Gateway
	users    *simuser.Manager
	url      string
	root     ed25519.PublicKey
	provider *simtest.Provider
}

func startGroupSim(b *testing.B) *groupSim {
	b.Helper()
	provider := simtest.NewProvider(b)
	cfg := simtest.Config(provider)
	cfg.DataDir, cfg.Database = b.TempDir(), ""
	// The protocol's limits (zero fields), except the group size, for the sender and
	// 256 members, and the sender's rate limits, which would be what is measured
	// otherwise.
	cfg.Network(gateway.NetworkWhatsApp).Limits = metasim.LimitsConfig{MaxGroupSize: groupBenchMembers + 1,
		BurstMessages: 1 << 30, HourlyMessages: 1 << 30, NewConversations: 1 << 30}
	env := simtest.StartWith(b, provider, cfg)
	sim := env.Sim
	return &groupSim{gw: sim.Gateway(gateway.NetworkWhatsApp), users: sim.Users(gateway.NetworkWhatsApp),
		url: sim.GatewayURL(gateway.NetworkWhatsApp), root: sim.RootPublicKey(gateway.NetworkWhatsApp), provider: provider}
}

// groupBench is one store's sub-benchmarks against the shared simulated side.
type groupBench struct {
	sim     *groupSim
	store   *sqlstore.Container
	members []jid.JID // the simulated users
	devices []jid.JID // their devices
	numbers int       // sender accounts made so far
}

// createGroupBenchUsers makes the 256 simulated users, a few at a time.
func createGroupBenchUsers(b *testing.B, users *simuser.Manager) (members, devices []jid.JID) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	members, devices, err := simtest.CreateUsers(ctx, users, groupBenchMembers, groupBenchDevices)
	if err != nil {
		b.Fatal(err)
	}
	return members, devices
}

// run measures b.N sends to the group; before (untimed) returns the members to send
// to, after (untimed, may be nil) undoes what before did.
func (gb *groupBench) run(b *testing.B, s *groupSender, before func() []jid.JID, after func()) {
	b.StopTimer()
	var sum sendFigures
	for range b.N {
		members := before()
		gb.quiesce(b, s)
		sum.add(s.send(b, members, gb.devicesOf(members), true))
		if after != nil {
			after()
		}
	}
	sum.report(b)
}

// benchFirst measures the first message of a fresh account: each iteration logs a new
// account in and creates a new group of all members, untimed.
func (gb *groupBench) benchFirst(b *testing.B) {
	b.StopTimer()
	var sum sendFigures
	for range b.N {
		s := gb.startSender(b)
		s.createGroup(b, gb.members)
		gb.quiesce(b, s)
		sum.add(s.send(b, gb.members, gb.devices, true))
		s.stop()
	}
	sum.report(b)
}

// quiesce waits until the gateway holds nothing for the devices or the sender (group
// notifications, receipts), so that one iteration's leftovers are not timed in the
// next.
func (gb *groupBench) quiesce(b *testing.B, s *groupSender) {
	b.Helper()
	g := gb.sim.gw
	ctx := context.Background()
	deadline := time.Now().Add(groupBenchWait)
	for _, e := range append([]jid.JID{s.acc.JID()}, gb.devices...) {
		for {
			n, err := g.QueueDepth(ctx, e)
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s still has %d stanzas queued after %s", e, n, groupBenchWait)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// devicesOf lists the simulated devices of members.
func (gb *groupBench) devicesOf(members []jid.JID) []jid.JID {
	in := make(map[jid.JID]bool, len(members))
	for _, m := range members {
		in[m] = true
	}
	var out []jid.JID
	for _, d := range gb.devices {
		if in[d.ToUser()] {
			out = append(out, d)
		}
	}
	return out
}

func changeMembers(b *testing.B, s *groupSender, action interop.GroupAction, user jid.JID) {
	b.Helper()
	res, err := s.acc.ChangeGroupParticipants(context.Background(), s.group, action, []jid.JID{user})
	if err != nil {
		b.Fatal(err)
	}
	if len(res) != 1 || res[0].Error != 0 {
		b.Fatalf("%s %s: %+v", action, user, res)
	}
}

// sendFigures are one send's measurements, or their sums.
type sendFigures struct {
	n                                             int
	client, afterAck, ack, deliver, prekey, usync time.Duration
	stanza, out, in, dist                         int
	prekeyFetches, usyncCalls                     int
	retries                                       int
}

func (f *sendFigures) add(o sendFigures) {
	f.n++
	f.client += o.client
	f.afterAck += o.afterAck
	f.ack += o.ack
	f.deliver += o.deliver
	f.prekey += o.prekey
	f.usync += o.usync
	f.stanza += o.stanza
	f.out += o.out
	f.in += o.in
	f.dist += o.dist
	f.prekeyFetches += o.prekeyFetches
	f.usyncCalls += o.usyncCalls
	f.retries += o.retries
}

func (f *sendFigures) report(b *testing.B) {
	n := float64(f.n)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / n }
	b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/n, "ms/send")
	b.ReportMetric(ms(f.client), "client-ms")
	b.ReportMetric(ms(f.afterAck), "after-ack-ms")
	b.ReportMetric(ms(f.ack), "ack-ms")
	b.ReportMetric(ms(f.deliver), "deliver-ms")
	b.ReportMetric(float64(f.stanza)/n, "stanza-B")
	b.ReportMetric(float64(f.out)/n, "out-B")
	b.ReportMetric(float64(f.in)/n, "in-B")
	b.ReportMetric(float64(f.dist)/n, "dist")
	if f.prekeyFetches > 0 {
		b.ReportMetric(ms(f.prekey), "prekey-ms")
	}
	if f.usyncCalls > 0 {
		b.ReportMetric(ms(f.usync), "usync-ms")
	}
	if f.retries > 0 {
		b.ReportMetric(float64(f.retries)/n, "retries")
	}
}

// groupSender is the third-party account that sends to the group, with its frames
// recorded.
type groupSender struct {
	acc    *interop.Account
	group  jid.JID
	rec    frameRecorder
	ready  chan struct{}
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	waitID  string
	waiting map[jid.JID]bool // devices whose delivery receipt is still awaited
	all     chan struct{}    // closed when waiting is empty
	retries int
}

// startSender logs a new third-party account in (the env's provider accepts its
// token), with its Signal state in gb.store, and waits until its keys are uploaded.
func (gb *groupBench) startSender(b *testing.B) *groupSender {
	b.Helper()
	gb.numbers++
	number := strconv.Itoa(491702000000 + gb.numbers)
	account := jid.Interop(simtest.IntegratorID, number)
	ctx := context.Background()
	acc, err := gb.store.CreateAccount(ctx, account)
	if err != nil {
		b.Fatal(err)
	}
	token := "token-" + number
	gb.sim.provider.SetToken(account.String(), token)
	user, _ := strconv.ParseUint(number, 10, 64)
	product := waWa6.ClientPayload_INTEROP
	payload := &waWa6.ClientPayload{Username: &user, Device: proto.Uint32(0), Product: &product,
		InteropData: &waWa6.ClientPayload_InteropData{AccountID: proto.Uint64(simtest.IntegratorID), Token: []byte(token),
			EnableReadReceipts: proto.Bool(true)}}
	s := &groupSender{ready: make(chan struct{}), done: make(chan struct{})}
	dial := interop.SocketDialer(socket.DialOptions{URL: gb.sim.url, RootKey: gb.sim.root, Payload: payload})
	s.acc, err = interop.NewAccount(interop.AccountConfig{
		Client: interop.Config{IQTimeout: time.Minute, Dial: func(ctx context.Context) (interop.FrameConn, error) {
			fc, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			return recordingConn{FrameConn: fc, rec: &s.rec}, nil
		}},
		Store:   gb.store.StoreFor(acc),
		Log:     zerolog.Nop(),
		Handler: s.handle,
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		_ = s.acc.Run(runCtx)
	}()
	b.Cleanup(s.stop)
	select {
	case <-s.ready:
	case <-time.After(30 * time.Second):
		b.Fatalf("%s did not connect", account)
	}
	return s
}

func (s *groupSender) stop() {
	s.cancel()
	<-s.done
}

func (s *groupSender) handle(ctx context.Context, evt interop.Event) {
	switch e := evt.(type) {
	case *interop.Connected:
		if !e.New {
			s.once.Do(func() { close(s.ready) })
		}
	case *interop.PreKeysUploaded:
		s.once.Do(func() { close(s.ready) })
	case *interop.IncomingReceipt:
		r, err := interop.ParseReceipt(e.Node)
		if err == nil && r.Type == interop.ReceiptRetry {
			s.mu.Lock()
			s.retries++
			s.mu.Unlock()
			_ = s.acc.HandleRetryReceipt(ctx, e.Node)
		}
		_ = s.acc.Client().Ack(ctx, e.Node)
		if err == nil && r.Type == interop.ReceiptDelivered {
			s.delivered(r)
		}
	case *interop.IncomingNotification:
		_ = s.acc.Client().Ack(ctx, e.Node)
	case *interop.IncomingMessage:
		_, _ = s.acc.HandleMessage(ctx, e.Node, func(context.Context, *interop.DecryptedMessage) error { return nil })
	}
}

func (s *groupSender) delivered(r interop.Receipt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Chat != s.group || len(s.waiting) == 0 {
		return
	}
	for _, id := range r.IDs {
		if id == s.waitID && s.waiting[r.Participant] {
			delete(s.waiting, r.Participant)
			if len(s.waiting) == 0 {
				close(s.all)
			}
		}
	}
}

// createGroup creates the group with every member and checks nobody was refused.
func (s *groupSender) createGroup(b *testing.B, members []jid.JID) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), groupBenchWait)
	defer cancel()
	info, refused, err := s.acc.Client().CreateGroup(ctx, "Benchmark", members)
	if err != nil {
		b.Fatal(err)
	}
	if len(refused) > 0 || len(info.Participants) != len(members)+1 {
		b.Fatalf("group of %d participants, %d refused (first: %+v)", len(info.Participants), len(refused), refused)
	}
	s.mu.Lock()
	s.group = info.JID
	s.mu.Unlock()
}

// send sends one text to the group, timed when timed, and waits (untimed) until each
// of the member devices sent its delivery receipt.
func (s *groupSender) send(b *testing.B, members, devices []jid.JID, timed bool) sendFigures {
	b.Helper()
	id := interop.NewID()
	all := make(chan struct{})
	s.mu.Lock()
	s.waitID, s.waiting, s.all, s.retries = id, make(map[jid.JID]bool, len(devices)), all, 0
	for _, d := range devices {
		s.waiting[d] = true
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), groupBenchWait)
	defer cancel()
	s.rec.start()
	if timed {
		b.StartTimer()
	}
	start := time.Now()
	res, err := s.acc.SendGroupMessage(ctx, s.group, members, id, groupBenchText, interop.SendOptions{})
	sent := time.Now()
	if timed {
		b.StopTimer()
	}
	if err != nil {
		b.Fatalf("group send: %v", err)
	}
	if !sameDevices(res.Devices, devices) {
		b.Fatalf("sent to %d devices, want the %d simulated ones", len(res.Devices), len(devices))
	}
	select {
	case <-all:
	case <-time.After(groupBenchWait):
		s.mu.Lock()
		left := len(s.waiting)
		s.mu.Unlock()
		b.Fatalf("%d of %d devices sent no delivery receipt in %s", left, len(devices), groupBenchWait)
	}
	f := sendFigures{deliver: time.Since(start), dist: res.Distributions}
	s.mu.Lock()
	f.retries = s.retries
	s.mu.Unlock()
	s.rec.figures(b, id, start, sent, &f)
	return f
}

func sameDevices(a, b []jid.JID) bool {
	if len(a) != len(b) {
		return false
	}
	in := make(map[jid.JID]bool, len(a))
	for _, d := range a {
		in[d] = true
	}
	for _, d := range b {
		if !in[d] {
			return false
		}
	}
	return true
}

// recordingConn keeps a copy of every frame with its time, while recording.
type recordingConn struct {
	interop.FrameConn
	rec *frameRecorder
}

func (c recordingConn) WriteFrame(ctx context.Context, frame []byte) error {
	c.rec.add(true, frame)
	return c.FrameConn.WriteFrame(ctx, frame)
}

func (c recordingConn) ReadFrame(ctx context.Context) ([]byte, error) {
	frame, err := c.FrameConn.ReadFrame(ctx)
	if err == nil {
		c.rec.add(false, frame)
	}
	return frame, err
}

type recordedFrame struct {
	at    time.Time
	out   bool
	frame []byte
}

type frameRecorder struct {
	mu     sync.Mutex
	on     bool
	frames []recordedFrame
}

func (r *frameRecorder) start() {
	r.mu.Lock()
	r.on, r.frames = true, nil
	r.mu.Unlock()
}

func (r *frameRecorder) add(out bool, frame []byte) {
	at := time.Now()
	r.mu.Lock()
	if r.on {
		r.frames = append(r.frames, recordedFrame{at: at, out: out, frame: append([]byte(nil), frame...)})
	}
	r.mu.Unlock()
}

// figures stops recording and reads the frames of the send of message id, which
// started at start and returned at end: the message stanza's size, the bytes each way
// until it was written, the client's time before it was written and after the
// gateway's ack came, the time between those, and the round trips of the prekey fetch
// and the device list query before it.
func (r *frameRecorder) figures(b *testing.B, id string, start, end time.Time, f *sendFigures) {
	b.Helper()
	r.mu.Lock()
	frames := r.frames
	r.on, r.frames = false, nil
	r.mu.Unlock()
	asked := make(map[string]recordedFrame) // iq id → the request
	kinds := make(map[string]string)
	var written time.Time
	for _, fr := range frames {
		n, err := stanza.Unmarshal(fr.frame)
		if err != nil {
			b.Fatalf("recorded frame: %v", err)
		}
		if !written.IsZero() {
			// After the message: only its ack matters.
			if !fr.out && n.Tag == "ack" && n.Attr("class") == "message" && n.Attr("id") == id {
				f.ack = fr.at.Sub(written)
				f.afterAck = end.Sub(fr.at)
				f.client = written.Sub(start) + f.afterAck
				return
			}
			continue
		}
		if fr.out {
			f.out += len(fr.frame)
		} else {
			f.in += len(fr.frame)
		}
		switch {
		case fr.out && n.Tag == "message" && n.Attr("id") == id:
			f.stanza, written = len(fr.frame), fr.at
		case fr.out && n.Tag == "iq":
			asked[n.Attr("id")], kinds[n.Attr("id")] = fr, n.Attr("xmlns")
		case !fr.out && n.Tag == "iq":
			req, ok := asked[n.Attr("id")]
			if !ok {
				continue
			}
			switch kinds[n.Attr("id")] {
			case "encrypt":
				f.prekey += fr.at.Sub(req.at)
				f.prekeyFetches++
			case "usync":
				f.usync += fr.at.Sub(req.at)
				f.usyncCalls++
			}
		}
	}
	if !written.IsZero() {
		b.Fatalf("no ack of message %s among %d recorded frames", id, len(frames))
	}
	b.Fatalf("no message stanza %s among %d recorded frames", id, len(frames))
}
