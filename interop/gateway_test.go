package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// testGateway is a minimal gateway for the account tests: it answers the key and
// device iqs, checks phash, routes messages and receipts between Accounts, keeps
// unacked stanzas for redelivery, and can be told to refuse or tamper. The real
// simulator (metasim) is much more; this is only what the tests need.
type testGateway struct {
	t testing.TB

	mu       sync.Mutex
	conns    map[jid.JID]*fakeConn
	devices  map[jid.JID][]uint16 // user → device ids, the gateway's truth
	keys     map[jid.JID]*gwKeys  // device → uploaded keys
	groups   map[jid.JID][]jid.JID
	pending  map[jid.JID][]stanza.Node // device → delivered, not acked yet
	refusals map[jid.JID][]stanza.Attrs
	// tamper, when set, may change a stanza before it reaches a device.
	tamper  func(to jid.JID, n *stanza.Node)
	dupNext map[jid.JID]bool
	sent    []stanza.Node // every <message> a client sent, refused or not
	iqs     []stanza.Node
	// receipts every <receipt> a client sent
	receipts []stanza.Node
	clock    int64
}

type gwKeys struct {
	reg      uint32
	identity [32]byte
	spk      SignedPreKey
	prekeys  []PreKey
	uploads  int
}

func newTestGateway(t testing.TB) *testGateway {
	return &testGateway{
		t:        t,
		conns:    make(map[jid.JID]*fakeConn),
		devices:  make(map[jid.JID][]uint16),
		keys:     make(map[jid.JID]*gwKeys),
		groups:   make(map[jid.JID][]jid.JID),
		pending:  make(map[jid.JID][]stanza.Node),
		refusals: make(map[jid.JID][]stanza.Attrs),
		dupNext:  make(map[jid.JID]bool),
		clock:    1700000000,
	}
}

// register lists a device in its user's device list (the gateway's truth).
func (g *testGateway) register(dev jid.JID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	u := dev.ToUser()
	for _, d := range g.devices[u] {
		if d == dev.Device {
			return
		}
	}
	g.devices[u] = append(g.devices[u], dev.Device)
}

// dialer connects dev; each dial is a new connection that gets <success> and then
// whatever is still unacked for dev.
func (g *testGateway) dialer(dev jid.JID) Dialer {
	return func(ctx context.Context) (FrameConn, error) {
		fc := &fakeConn{
			toClient:   make(chan []byte, 4096),
			fromClient: make(chan []byte, 64),
			closed:     make(chan struct{}),
		}
		g.mu.Lock()
		if old := g.conns[dev]; old != nil {
			_ = old.Close()
		}
		g.conns[dev] = fc
		attrs := stanza.Attrs{"t": "1700000000"}
		if g.keys[dev] == nil {
			attrs["new"] = "1"
		}
		g.write(fc, stanza.Node{Tag: "success", Attrs: attrs})
		for _, n := range g.pending[dev] {
			g.write(fc, n)
		}
		g.mu.Unlock()
		go g.serve(dev, fc)
		return fc, nil
	}
}

// drop closes dev's connection; its client reconnects.
func (g *testGateway) drop(dev jid.JID) {
	g.mu.Lock()
	fc := g.conns[dev]
	g.mu.Unlock()
	if fc != nil {
		_ = fc.Close()
	}
}

func (g *testGateway) serve(dev jid.JID, fc *fakeConn) {
	for {
		select {
		case b := <-fc.fromClient:
			n, err := stanza.Unmarshal(b)
			if err != nil {
				g.t.Errorf("%s wrote an undecodable frame: %v", dev, err)
				return
			}
			g.mu.Lock()
			g.handle(dev, fc, n)
			g.mu.Unlock()
		case <-fc.closed:
			return
		}
	}
}

// write sends to one connection; the caller holds mu.
func (g *testGateway) write(fc *fakeConn, n stanza.Node) {
	b, err := stanza.Marshal(n)
	if err != nil {
		g.t.Errorf("gateway failed to encode %s: %v", n, err)
		return
	}
	select {
	case fc.toClient <- b:
	case <-fc.closed:
	default:
		g.t.Errorf("client does not read")
	}
}

// deliver queues a stanza for dev until acked and sends it if dev is connected.
func (g *testGateway) deliver(dev jid.JID, n stanza.Node) {
	if g.tamper != nil {
		g.tamper(dev, &n)
	}
	g.pending[dev] = append(g.pending[dev], n)
	fc := g.conns[dev]
	if fc == nil {
		return
	}
	g.write(fc, n)
	if g.dupNext[dev] && n.Tag == "message" {
		delete(g.dupNext, dev)
		g.write(fc, n)
	}
}

func (g *testGateway) handle(dev jid.JID, fc *fakeConn, n stanza.Node) {
	switch n.Tag {
	case "iq":
		g.iqs = append(g.iqs, n)
		answer := g.answerIQ(dev, n)
		if answer.Tag == "error" { // a refusal: <iq type="error"><error code/></iq>
			answer = stanza.Node{Content: []stanza.Node{answer}}
			answer.Attrs = stanza.Attrs{"type": "error"}
		} else {
			answer.Attrs = stanza.Attrs{"type": "result"}
		}
		answer.Tag = "iq"
		answer.Attrs["id"], answer.Attrs["from"] = n.Attr("id"), jid.ServerGateway
		g.write(fc, answer)
	case "message":
		g.sent = append(g.sent, n)
		g.route(dev, fc, n)
	case "receipt":
		g.receipts = append(g.receipts, n)
		g.routeReceipt(dev, n)
	case "ack":
		g.acked(dev, n)
	}
}

func (g *testGateway) answerIQ(dev jid.JID, iq stanza.Node) stanza.Node {
	children := iq.Children()
	if len(children) == 0 {
		return stanza.Node{}
	}
	c := children[0]
	switch {
	case iq.Attr("xmlns") == "encrypt" && c.Tag == "count":
		k := g.keys[dev]
		count := 0
		if k != nil {
			count = len(k.prekeys)
		}
		return stanza.Node{Content: []stanza.Node{{Tag: "count", Attrs: stanza.Attrs{"value": strconv.Itoa(count)}}}}
	case iq.Attr("xmlns") == "encrypt" && c.Tag == "registration":
		g.upload(dev, iq)
	case iq.Attr("xmlns") == "encrypt" && c.Tag == "rotate":
		skey, _ := c.Child("skey")
		k := g.keys[dev]
		if k == nil {
			return stanza.Node{Tag: "error", Attrs: stanza.Attrs{"code": "412", "text": "no keys uploaded"}}
		}
		spk := parseTestSignedPreKey(g.t, skey)
		check := signal.PreKeyBundle{IdentityKey: k.identity,
			SignedPreKey: signal.SignedPreKey{ID: spk.ID, Public: spk.Pub, Signature: spk.Signature}}
		if check.Verify() != nil {
			return stanza.Node{Tag: "error", Attrs: stanza.Attrs{"code": "400", "text": "signed prekey signature does not verify"}}
		}
		k.spk = spk
	case iq.Attr("xmlns") == "encrypt" && c.Tag == "key":
		return stanza.Node{Content: []stanza.Node{g.fetch(c)}}
	case iq.Attr("xmlns") == "usync":
		return stanza.Node{Content: []stanza.Node{g.usync(c)}}
	}
	return stanza.Node{}
}

func (g *testGateway) upload(dev jid.JID, iq stanza.Node) {
	k := g.keys[dev]
	if k == nil {
		k = &gwKeys{}
		g.keys[dev] = k
	}
	reg, err := fixedChild(iq, "registration", 4)
	if err != nil {
		g.t.Errorf("bad upload: %v", err)
		return
	}
	k.reg = binary.BigEndian.Uint32(reg)
	before := k.identity
	if err := copyChild(k.identity[:], iq, "identity"); err != nil {
		g.t.Errorf("bad upload: %v", err)
	}
	if before != k.identity {
		k.prekeys = nil // one-time prekeys of another identity are useless
	}
	skey, _ := iq.Child("skey")
	k.spk = parseTestSignedPreKey(g.t, skey)
	list, _ := iq.Child("list")
	for _, key := range list.ChildrenByTag("key") {
		id, err := parseKeyID(key)
		var pk PreKey
		if err == nil {
			err = copyChild(pk.Pub[:], key, "value")
		}
		if err != nil {
			g.t.Errorf("bad upload key: %v", err)
			return
		}
		pk.ID = id
		k.prekeys = append(k.prekeys, pk)
	}
	k.uploads++
}

func parseTestSignedPreKey(t testing.TB, skey stanza.Node) SignedPreKey {
	var spk SignedPreKey
	id, err := parseKeyID(skey)
	if err == nil {
		err = copyChild(spk.Pub[:], skey, "value")
	}
	if err == nil {
		err = copyChild(spk.Signature[:], skey, "signature")
	}
	if err != nil {
		t.Errorf("bad skey: %v", err)
	}
	spk.ID = id
	return spk
}

// fetch hands out bundles; a one-time prekey is never handed out twice.
func (g *testGateway) fetch(key stanza.Node) stanza.Node {
	var users []stanza.Node
	for _, u := range key.ChildrenByTag("user") {
		d, _ := jid.Parse(u.Attr("jid"))
		k := g.keys[d]
		if k == nil {
			users = append(users, stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": d.String()},
				Content: []stanza.Node{{Tag: "error", Attrs: stanza.Attrs{"code": "404"}}}})
			continue
		}
		skey, _ := SignedPreKeyNode(k.spk)
		content := []stanza.Node{RegistrationNode(k.reg), KeyTypeNode(), IdentityNode(k.identity), skey}
		if len(k.prekeys) > 0 {
			pk, _ := PreKeyNode(k.prekeys[0])
			k.prekeys = k.prekeys[1:]
			content = append(content, pk)
		}
		users = append(users, stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": d.String()}, Content: content})
	}
	return stanza.Node{Tag: "list", Content: users}
}

func (g *testGateway) usync(q stanza.Node) stanza.Node {
	list, _ := q.Child("list")
	var users []stanza.Node
	for _, u := range list.ChildrenByTag("user") {
		user, _ := jid.Parse(u.Attr("jid"))
		var devs []stanza.Node
		for _, id := range g.devices[user] {
			devs = append(devs, stanza.Node{Tag: "device", Attrs: stanza.Attrs{"id": strconv.Itoa(int(id))}})
		}
		users = append(users, stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": user.String()},
			Content: []stanza.Node{{Tag: "devices", Content: []stanza.Node{{Tag: "device-list", Content: devs}}}}})
	}
	return stanza.Node{Tag: "usync", Content: []stanza.Node{{Tag: "list", Content: users}}}
}

// memberDevices is every device of the chat's recipients except the sender's own.
func (g *testGateway) memberDevices(sender, to jid.JID) []jid.JID {
	users := []jid.JID{to}
	if to.IsGroup() {
		users = g.groups[to]
	}
	var out []jid.JID
	for _, u := range users {
		if u == sender.ToUser() {
			continue
		}
		for _, d := range g.devices[u] {
			out = append(out, u.WithDevice(d))
		}
	}
	return out
}

func (g *testGateway) route(from jid.JID, fc *fakeConn, n stanza.Node) {
	id := n.Attr("id")
	ack := stanza.Attrs{"class": "message", "id": id, "from": jid.ServerGateway}
	to, _ := jid.Parse(n.Attr("to"))
	expected := g.memberDevices(from, to)
	switch {
	case len(g.refusals[from]) > 0:
		for k, v := range g.refusals[from][0] {
			ack[k] = v
		}
		g.refusals[from] = g.refusals[from][1:]
	case g.keys[from] == nil:
		ack["error"] = "412"
	case n.HasAttr("phash") && n.Attr("phash") != signal.ParticipantHash(expected):
		ack["error"] = "409"
	}
	if ack["error"] != "" {
		g.write(fc, stanza.Node{Tag: "ack", Attrs: ack})
		return
	}
	g.clock++
	ack["t"] = strconv.FormatInt(g.clock, 10)
	g.write(fc, stanza.Node{Tag: "ack", Attrs: ack})

	encs := map[jid.JID]stanza.Node{}
	var order []jid.JID
	if parts, ok := n.Child("participants"); ok {
		for _, p := range parts.ChildrenByTag("to") {
			d, _ := jid.Parse(p.Attr("jid"))
			enc, _ := p.Child("enc")
			encs[d] = enc
			order = append(order, d)
		}
	}
	attrs := stanza.Attrs{"id": id, "t": ack["t"], "type": n.Attr("type")}
	if e := n.Attr("edit"); e != "" {
		attrs["edit"] = e
	}
	if !to.IsGroup() {
		attrs["from"] = from.String()
		for _, d := range order {
			g.deliver(d, stanza.Node{Tag: "message", Attrs: attrs, Content: []stanza.Node{encs[d]}})
		}
		return
	}
	attrs["from"], attrs["participant"] = to.String(), from.String()
	skmsg, hasSK := n.Child("enc")
	targets := expected
	if !hasSK {
		targets = order // a retry answer: only its one device
	}
	for _, d := range targets {
		var content []stanza.Node
		if e, ok := encs[d]; ok {
			content = append(content, e)
		}
		if hasSK {
			content = append(content, skmsg)
		}
		if len(content) > 0 {
			g.deliver(d, stanza.Node{Tag: "message", Attrs: attrs, Content: content})
		}
	}
}

// routeReceipt turns <receipt to [participant]> into <receipt from [participant]> for
// the device it is for (in groups the participant is swapped for the sender).
func (g *testGateway) routeReceipt(from jid.JID, n stanza.Node) {
	to, _ := jid.Parse(n.Attr("to"))
	attrs := stanza.Attrs{"id": n.Attr("id")}
	if t := n.Attr("type"); t != "" {
		attrs["type"] = t
	}
	target := to
	if to.IsGroup() {
		target, _ = jid.Parse(n.Attr("participant"))
		attrs["from"], attrs["participant"] = to.String(), from.String()
	} else {
		attrs["from"] = from.String()
	}
	g.deliver(target, stanza.Node{Tag: "receipt", Attrs: attrs, Content: n.Content})
}

// acked forgets the first pending stanza the ack names.
func (g *testGateway) acked(dev jid.JID, ack stanza.Node) {
	list := g.pending[dev]
	for i, n := range list {
		if n.Tag == ack.Attr("class") && n.Attr("id") == ack.Attr("id") && n.Attr("from") == ack.Attr("to") &&
			n.Attr("participant") == ack.Attr("participant") {
			g.pending[dev] = append(list[:i:i], list[i+1:]...)
			return
		}
	}
}

// notify delivers a notification to dev.
func (g *testGateway) notify(dev jid.JID, n stanza.Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deliver(dev, n)
}

// refuseNext makes the next messages from dev get these ack attributes.
func (g *testGateway) refuseNext(dev jid.JID, acks ...stanza.Attrs) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refusals[dev] = append(g.refusals[dev], acks...)
}

func (g *testGateway) pendingFor(dev jid.JID) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending[dev])
}

func (g *testGateway) preKeyCount(dev jid.JID) (count, uploads int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if k := g.keys[dev]; k != nil {
		return len(k.prekeys), k.uploads
	}
	return 0, 0
}

// sentMessages returns the <message> stanzas clients sent, in order.
func (g *testGateway) sentMessages() []stanza.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]stanza.Node(nil), g.sent...)
}

func (g *testGateway) setTamper(fn func(to jid.JID, n *stanza.Node)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tamper = fn
}

// corruptNext flips a byte in the ciphertext of the next n messages to dev (in the
// enc of the given type).
func (g *testGateway) corruptNext(dev jid.JID, encType string, n int) {
	g.setTamper(func(to jid.JID, st *stanza.Node) {
		if to != dev || st.Tag != "message" || n == 0 {
			return
		}
		children := append([]stanza.Node(nil), st.Children()...)
		for i, c := range children {
			if c.Attr("type") != encType {
				continue
			}
			b, _ := c.Bytes()
			b = bytes.Clone(b)
			b[len(b)/2] ^= 0x5a
			children[i] = stanza.Node{Tag: "enc", Attrs: c.Attrs, Content: b}
			n--
		}
		st.Content = children
	})
}

func (g *testGateway) String() string { return fmt.Sprintf("gateway(%d conns)", len(g.conns)) }

// forgetKeys makes the gateway lose dev's keys (its sends then get 412).
func (g *testGateway) forgetKeys(dev jid.JID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.keys, dev)
}

// sentReceipts returns the <receipt> stanzas clients sent, in order.
func (g *testGateway) sentReceipts() []stanza.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]stanza.Node(nil), g.receipts...)
}
