package gateway

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// TestAppendix_Faults checks each fault of the control API on one endpoint.
func TestAppendix_Faults(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, p *pair)
	}{
		{"drop connection", func(t *testing.T, p *pair) {
			if !p.e.g().Faults().DropConnection(p.a.jid) {
				t.Fatal("no connection to drop")
			}
			p.a.expectClosed()
			if p.e.g().Faults().DropConnection(jid.Interop(1, "1")) {
				t.Fatal("dropped a connection that does not exist")
			}
		}},
		{"delay stanzas", func(t *testing.T, p *pair) {
			p.e.g().Faults().DelayStanzas(p.a.jid, 400*time.Millisecond)
			start := time.Now()
			p.m0.sendMessage(textTo("F1", p.a.jid, p.a.jid))
			p.a.waitFor("delayed message", isMessage("F1"))
			if d := time.Since(start); d < 400*time.Millisecond {
				t.Fatalf("arrived after %s, want at least 400ms", d)
			}
			p.e.g().Faults().DelayStanzas(p.a.jid, 0)
			start = time.Now()
			p.a.iq(pingIQ())
			if d := time.Since(start); d >= 400*time.Millisecond {
				t.Fatalf("delay not lifted: %s", d)
			}
		}},
		{"duplicate next", func(t *testing.T, p *pair) {
			p.e.g().Faults().DuplicateNext(p.a.jid, 1)
			p.m0.sendMessage(textTo("F1", p.a.jid, p.a.jid))
			p.m0.sendMessage(textTo("F2", p.a.jid, p.a.jid))
			p.a.waitFor("first copy", isMessage("F1"))
			p.a.waitFor("second copy", isMessage("F1"))
			p.a.waitFor("next message", isMessage("F2"))
			p.a.expectNone("third copy", func(n stanza.Node) bool { return n.Tag == "message" })
		}},
		{"reorder next", func(t *testing.T, p *pair) {
			p.e.g().Faults().ReorderNext(p.a.jid, 3)
			for i := range 4 {
				p.m0.sendMessage(textTo("F"+strconv.Itoa(i), p.a.jid, p.a.jid))
			}
			var got []string
			for range 4 {
				got = append(got, p.a.waitFor("message", isTag("message")).Attr("id"))
			}
			if want := []string{"F2", "F1", "F0", "F3"}; !slices.Equal(got, want) {
				t.Fatalf("order %v, want %v", got, want)
			}
		}},
		{"refuse next sends", func(t *testing.T, p *pair) {
			p.e.g().Faults().RefuseNextSends(p.a.jid, 2, 503, "maintenance")
			for _, id := range []string{"F1", "F2"} {
				ack := p.a.sendMessage(textTo(id, p.m, p.mDevices()...))
				if ackError(ack) != "503" || ack.Attr("reason") != "maintenance" {
					t.Fatalf("ack %v, want 503 maintenance", ack.Attrs)
				}
			}
			if ack := p.a.sendMessage(textTo("F3", p.m, p.mDevices()...)); ackError(ack) != "" {
				t.Fatalf("third send: %v", ack.Attrs)
			}
			p.m0.waitFor("accepted message", isMessage("F3"))
			p.m0.expectNone("refused message", isMessage("F1"))
		}},
		{"stop answering pings", func(t *testing.T, p *pair) {
			p.e.g().Faults().StopAnsweringPings(p.a.jid, true)
			ping := pingIQ()
			ping.Attrs["id"] = "P1"
			ping.Attrs["to"] = jid.ServerGateway
			p.a.send(ping)
			p.a.expectNone("ping answer", func(n stanza.Node) bool { return n.Tag == "iq" && n.Attr("id") == "P1" })
			// Other iqs are still answered.
			if code := iqCode(t, p.a.iq(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "encrypt"},
				Content: []stanza.Node{{Tag: "count"}}})); code != 0 {
				t.Fatalf("count: %d", code)
			}
			p.e.g().Faults().StopAnsweringPings(p.a.jid, false)
			if code := iqCode(t, p.a.iq(pingIQ())); code != 0 {
				t.Fatalf("ping after the fault: %d", code)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t)
			tt.run(t, p)
		})
	}
}

// TestRestart_KeepsState checks that a gateway restarted on the same database keeps
// the directory, opt-ins, keys, groups, blocks, restrictions, contact history and
// queued stanzas, on SQLite and PostgreSQL.
func TestRestart_KeepsState(t *testing.T) {
	sqltest.Run(t, testRestart)
}

func testRestart(t *testing.T, db *dbutil.Database) {
	p := newPairOn(t, db, func(c *Config) { c.Limits.NewConversations = 1 })
	e := p.e
	ctx := context.Background()
	answer := p.a.iq(groupIQ("set", jid.ServerGroup, stanza.Node{Tag: "create", Attrs: stanza.Attrs{"subject": "Kept"},
		Content: participants(p.m)}))
	g, _ := answer.Child("group")
	group := jid.New(g.Attr("id"), jid.ServerGroup)
	other, _ := e.metaUser("491702222222", UserOptions{})
	mustNoErr(t, e.g().Block(ctx, other, p.a.jid, true))
	mustNoErr(t, e.g().Restrict(ctx, other, "spam", e.clk.Now().Add(time.Hour)))
	p.m0.sendMessage(textTo("K0", p.a.jid, p.a.jid)) // m wrote to a: contact history
	p.a.close()
	waitDisconnected(t, e, p.a.jid)
	p.m0.sendMessage(textTo("K1", p.a.jid, p.a.jid))

	e.restart()
	u, err := e.g().User(ctx, p.m)
	mustNoErr(t, err)
	if len(u.Devices) != 2 || len(u.KeyedDevices) != 2 || !slices.Equal(u.OptIns, []uint16{integratorID}) || !u.Options.ReadReceipts {
		t.Fatalf("user after restart %+v", u)
	}
	if o, _ := e.g().User(ctx, other); o.Restricted == nil {
		t.Fatal("restriction lost")
	}
	a, first := e.dialRaw(e.payload("491701234567"))
	a.jid = jid.Interop(integratorID, "491701234567")
	if first.Tag != "success" || first.HasAttr("new") {
		t.Fatalf("login after restart: %s %v (keys must be kept)", first.Tag, first.Attrs)
	}
	if n := a.next(); n.Attr("id") != "K0" {
		t.Fatalf("unacked K0 not redelivered: %v", n.Attrs)
	}
	if n := a.next(); n.Attr("id") != "K1" {
		t.Fatalf("queued K1 not delivered: %v", n.Attrs)
	}
	a.expectOffline()
	if bundle := fetchOne(t, a, p.m1.jid); !hasChild(bundle, "identity") {
		t.Fatalf("keys lost: %v", bundle)
	}
	info := a.iq(groupIQ("get", group.String(), stanza.Node{Tag: "query"}))
	if gi, ok := info.Child("group"); !ok || gi.Attr("subject") != "Kept" {
		t.Fatalf("group lost: %v", info)
	}
	// One new conversation is allowed: the blocker (who never wrote) takes it...
	before, _ := e.g().QueueDepth(ctx, other)
	if ack := a.sendMessage(textTo("K3", other, other)); ackError(ack) != "" {
		t.Fatalf("send to a blocker: %v", ack.Attrs)
	}
	// ...and m, who wrote before the restart, is no new conversation.
	if ack := a.sendMessage(textTo("K2", p.m, p.mDevices()...)); ackError(ack) != "" {
		t.Fatalf("send after restart: %v", ack.Attrs)
	}
	m0 := e.connectDevice(p.m0.jid)
	m0.waitFor("message after restart", isMessage("K2"))
	if depth, _ := e.g().QueueDepth(ctx, other); depth != before {
		t.Fatalf("block lost: %d queued for the blocker, was %d", depth, before)
	}
}
