package gateway

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// TestSection3_2_OfflineQueue checks an offline account: its stanzas are kept, the
// provider gets one signed push with the pending count, and on the next connection
// they come after <success>, followed by <ib><offline count/></ib>.
func TestSection3_2_OfflineQueue(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.PushInterval = time.Hour })
	_, mc := e.metaUser("491701111111", UserOptions{})
	a := e.account("491701234567")
	a.close()
	waitDisconnected(t, e, a.jid)
	for i := range 3 {
		if ack := mc.sendMessage(textTo("Q"+strconv.Itoa(i), a.jid, a.jid)); ackError(ack) != "" {
			t.Fatalf("send to an offline account refused: %v", ack.Attrs)
		}
	}
	select {
	case push := <-e.prov.pushes:
		if push.JID != a.jid.String() || push.Pending < 1 {
			t.Fatalf("push %+v", push)
		}
	case <-time.After(waitLong):
		t.Fatal("no push callback")
	}
	// One push per interval: the later stanzas did not push again.
	select {
	case push := <-e.prov.pushes:
		t.Fatalf("second push within the interval: %+v", push)
	case <-time.After(waitShort):
	}
	if depth, _ := e.g().QueueDepth(context.Background(), a.jid); depth != 3 {
		t.Fatalf("queue depth %d", depth)
	}
	c, first := e.dialRaw(e.payload("491701234567"))
	if first.Tag != "success" {
		t.Fatalf("first %s", first)
	}
	for i := range 3 {
		n := c.next()
		if n.Tag != "message" || n.Attr("id") != "Q"+strconv.Itoa(i) {
			t.Fatalf("stanza %d after success: %s %v", i, n.Tag, n.Attrs)
		}
		c.ack(n)
	}
	if n := c.next(); n.Tag != "ib" {
		t.Fatalf("after the queue: %s, want <ib>", n)
	} else if off, _ := n.Child("offline"); off.Attr("count") != "3" {
		t.Fatalf("offline marker %v", off.Attrs)
	}
	// Live delivery continues after the marker.
	mc.sendMessage(textTo("LIVE", a.jid, a.jid))
	c.waitFor("live message", isMessage("LIVE"))
}

// TestSection3_2_Redelivery checks at-least-once delivery: an unacked stanza comes
// again on the next connection (for accounts and Meta devices alike), an acked one
// does not.
func TestSection3_2_Redelivery(t *testing.T) {
	p := newPair(t)
	for _, id := range []string{"U1", "U2"} {
		p.a.sendMessage(textTo(id, p.m, p.mDevices()...))
		p.m0.sendMessage(textTo(id, p.a.jid, p.a.jid))
	}
	p.a.ack(p.a.waitFor("U1", isMessage("U1")))
	p.a.waitFor("U2", isMessage("U2")) // not acked
	p.m0.ack(p.m0.waitFor("U1", isMessage("U1")))
	p.m0.waitFor("U2", isMessage("U2"))
	// An ack naming the wrong sender removes nothing.
	p.a.send(stanza.Node{Tag: "ack", Attrs: stanza.Attrs{"class": "message", "id": "U2", "to": "491709999999@s.whatsapp.net"}})
	p.a.iq(pingIQ())
	p.m0.iq(pingIQ())
	for _, c := range []*rawClient{p.a, p.m0} {
		c.close()
		waitDisconnected(t, p.e, c.jid)
	}
	a2, first := p.e.dialRaw(p.e.payload("491701234567"))
	if first.Tag != "success" {
		t.Fatal(first)
	}
	m2 := newRawClient(t, must(p.e.g().ConnectDevice(context.Background(), p.m0.jid)))
	m2.next()
	for name, c := range map[string]*rawClient{"account": a2, "meta device": m2} {
		n := c.next()
		if n.Tag != "message" || n.Attr("id") != "U2" {
			t.Fatalf("%s: redelivered %s %v, want U2", name, n.Tag, n.Attrs)
		}
		if off := c.next(); off.Tag != "ib" {
			t.Fatalf("%s: after U2 got %s, want the offline marker", name, off)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestSection3_2_QueueLimits checks that a queue keeps at most Limits.QueueMax
// stanzas (the newest) and none older than Limits.QueueRetention.
func TestSection3_2_QueueLimits(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.QueueMax = 3; c.Limits.QueueRetention = time.Hour })
	_, mc := e.metaUser("491701111111", UserOptions{})
	a := e.account("491701234567")
	a.close()
	waitDisconnected(t, e, a.jid)
	for i := range 5 {
		mc.sendMessage(textTo("Q"+strconv.Itoa(i), a.jid, a.jid))
	}
	ctx := context.Background()
	if depth, _ := e.g().QueueDepth(ctx, a.jid); depth != 3 {
		t.Fatalf("depth %d, want 3", depth)
	}
	c, _ := e.dialRaw(e.payload("491701234567"))
	for _, want := range []string{"Q2", "Q3", "Q4"} {
		if n := c.next(); n.Attr("id") != want {
			t.Fatalf("got %v, want %s", n.Attrs, want)
		}
	}
	if off := c.expectOffline(); off != 3 {
		t.Fatalf("offline count %d", off)
	}
	c.close()
	waitDisconnected(t, e, a.jid)
	e.clk.Advance(2 * time.Hour)
	e.g().PruneQueues(ctx)
	if depth, _ := e.g().QueueDepth(ctx, a.jid); depth != 0 {
		t.Fatalf("depth %d after the retention", depth)
	}
}

// TestSection3_5_Receipts checks receipt routing: delivered receipts with from (the
// receipt's sender device), read and played receipts only when both sides enabled
// read receipts, retry receipts always and only to the device named, with their body.
func TestSection3_5_Receipts(t *testing.T) {
	tests := []struct {
		name                string
		accountRR, metaRR   bool
		wantRead, wantRetry bool
	}{
		{"both enabled", true, true, true, true},
		{"account disabled", false, true, false, true},
		{"meta user disabled", true, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			m, m0 := e.metaUser("491701111111", UserOptions{ReadReceipts: tt.metaRR})
			d1, err := e.g().AddDevice(ctx, m)
			mustNoErr(t, err)
			m1 := e.connectDevice(d1)
			m1.uploadKeys(2)
			p := e.payload("491701234567")
			p.InteropData.EnableReadReceipts = &tt.accountRR
			a, _ := e.dialRaw(p)
			a.jid = jid.Interop(integratorID, "491701234567")
			a.expectOffline()
			a.uploadKeys(2)

			// m1 sent a message; a acknowledges delivery, reading and a failed decryption.
			m1.sendMessage(textTo("MSG", a.jid, a.jid))
			a.waitFor("message", isMessage("MSG"))
			send := func(r interop.Receipt) {
				n, err := interop.BuildReceipt(r)
				mustNoErr(t, err)
				a.send(n)
			}
			send(interop.Receipt{Chat: d1, IDs: []string{"MSG", "MSG0"}})
			send(interop.Receipt{Chat: d1, IDs: []string{"MSG"}, Type: interop.ReceiptRead, T: time.Unix(1700000000, 0)})
			a.send(stanza.Node{Tag: "receipt", Attrs: stanza.Attrs{"to": d1.String(), "id": "MSG", "type": "retry"},
				Content: []stanza.Node{{Tag: "retry", Attrs: stanza.Attrs{"count": "1", "id": "MSG", "t": "1700000000", "v": "1"}},
					interop.RegistrationNode(77)}})

			isReceipt := func(typ string) func(stanza.Node) bool {
				return func(n stanza.Node) bool { return n.Tag == "receipt" && n.Attr("type") == typ }
			}
			for _, dev := range []*rawClient{m0, m1} {
				r := dev.waitFor("delivery receipt", isReceipt(""))
				parsed, err := interop.ParseReceipt(r)
				if err != nil || parsed.Chat != a.jid || len(parsed.IDs) != 2 {
					t.Fatalf("%s: delivery receipt %v: %+v %v", dev.jid, r.Attrs, parsed, err)
				}
				dev.ack(r)
			}
			if tt.wantRead {
				r := m1.waitFor("read receipt", isReceipt("read"))
				if r.Attr("t") != "1700000000" {
					t.Fatalf("read receipt %v", r.Attrs)
				}
			} else {
				m1.expectNone("read receipt", isReceipt("read"))
			}
			r := m1.waitFor("retry receipt", isReceipt("retry"))
			if req, err := interop.ParseRetryReceipt(r); err != nil || req.Device != a.jid || req.RegistrationID != 77 {
				t.Fatalf("retry receipt %v: %+v %v", r, req, err)
			}
			m0.expectNone("retry receipt for another device", isReceipt("retry"))
		})
	}
}
