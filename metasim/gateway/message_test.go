package gateway

import (
	"context"
	"encoding/base64"
	"strconv"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// pair is a Meta user with two keyed devices and a third-party account, both
// connected, the user opted in to the account's integrator.
type pair struct {
	e      *env
	m      jid.JID
	m0, m1 *rawClient
	a      *rawClient
}

func newPair(t *testing.T, opts ...func(*Config)) *pair {
	return newPairOn(t, sqltest.SQLite(t), opts...)
}

func newPairOn(t *testing.T, db *dbutil.Database, opts ...func(*Config)) *pair {
	e := newEnvOn(t, db, opts...)
	p := &pair{e: e}
	p.m, p.m0 = e.metaUser("491701111111", UserOptions{ReadReceipts: true})
	d1, err := e.g().AddDevice(context.Background(), p.m)
	mustNoErr(t, err)
	p.m1 = e.connectDevice(d1)
	p.m1.uploadKeys(5)
	p.a = e.account("491701234567")
	return p
}

func (p *pair) mDevices() []jid.JID { return []jid.JID{p.m0.jid, p.m1.jid} }

// TestSection3_3_Refusals checks every refusal of a sent message with its code and
// reason (sections 3.3, 8 and 10), and that a refused message reaches nobody.
func TestSection3_3_Refusals(t *testing.T) {
	p := newPair(t)
	e := p.e
	ctx := context.Background()
	stranger := jid.New("491703333333", jid.ServerGateway) // not opted in
	mustNoErr(t, e.g().CreateUser(ctx, stranger, UserOptions{}))
	e.connectDevice(stranger).uploadKeys(2)
	noKeys := e.connect("491707777777")
	withMedia := func(n stanza.Node, mediatype string) stanza.Node {
		parts, _ := n.Child("participants")
		for _, to := range parts.Children() {
			enc := to.Children()[0]
			enc.Attrs["mediatype"] = mediatype
		}
		n.Attrs["type"] = "media"
		return n
	}
	tests := []struct {
		name       string
		from       *rawClient
		msg        stanza.Node
		wantCode   string
		wantReason string
	}{
		{"accepted", p.a, textTo("OK1", p.m, p.mDevices()...), "", ""},
		{"sticker type", p.a, msgNode("S1", p.m, "sticker", p.mDevices(), true), "406", ""},
		{"poll type", p.a, msgNode("S2", p.m, "poll", p.mDevices(), true), "406", ""},
		{"sticker mediatype", p.a, withMedia(textTo("S3", p.m, p.mDevices()...), "sticker"), "406", ""},
		{"view-once enc", p.a, func() stanza.Node {
			n := withMedia(textTo("S4", p.m, p.mDevices()...), "image")
			parts, _ := n.Child("participants")
			parts.Children()[0].Children()[0].Attrs["view_once"] = "true"
			return n
		}(), "406", ""},
		{"status", p.a, msgNode("S5", jid.JID{}, "text", p.mDevices(), true), "406", ""},
		{"media without mediatype", p.a, msgNode("S6", p.m, "media", p.mDevices(), true), "400", ""},
		{"no type", p.a, func() stanza.Node { n := textTo("S7", p.m, p.mDevices()...); delete(n.Attrs, "type"); return n }(), "400", ""},
		{"no enc", p.a, stanza.Node{Tag: "message", Attrs: stanza.Attrs{"id": "S8", "to": p.m.String(), "type": "text"}}, "400", ""},
		{"enc not base64", p.a, func() stanza.Node {
			n := textTo("S9", p.m, p.mDevices()...)
			parts, _ := n.Child("participants")
			parts.Children()[0].Content = []stanza.Node{{Tag: "enc", Attrs: stanza.Attrs{"v": "2", "type": "msg"}, Content: "!!"}}
			return n
		}(), "400", ""},
		{"skmsg to a user", p.a, func() stanza.Node {
			n := textTo("S10", p.m, p.mDevices()...)
			n.Content = append(n.Children(), stanza.Node{Tag: "enc", Attrs: stanza.Attrs{"v": "2", "type": "skmsg"}, Content: []byte{1}})
			return n
		}(), "400", ""},
		{"unknown user", p.a, textTo("S11", jid.New("491709999999", jid.ServerGateway), jid.New("491709999999", jid.ServerGateway)), "404", ""},
		{"unknown group", p.a, msgNode("S12", jid.New("120363000000000009", jid.ServerGroup), "text", p.mDevices(), true), "404", ""},
		{"other network", p.a, textTo("S13", jid.New("1000", jid.ServerMessenger), jid.New("1000", jid.ServerMessenger)), "404", ""},
		{"not opted in", p.a, textTo("S14", stranger, stranger), "403", "not-opted-in"},
		{"unknown account", p.m0,
			textTo("S15", jid.Interop(2, "491708888888"), jid.Interop(2, "491708888888")), "404", ""},
		{"account to account", p.a, textTo("S19", noKeys.jid, noKeys.jid), "403", ""},
		{"stale phash", p.a, textTo("S16", p.m, p.m0.jid), "409", ""},
		{"phash of a removed device", p.a, textTo("S17", p.m, append(p.mDevices(), p.m.WithDevice(7))...), "409", ""},
		{"no keys uploaded", noKeys, textTo("S18", p.m, p.mDevices()...), "412", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "status" {
				tt.msg.Attrs["to"] = "status@broadcast"
			}
			ack := tt.from.sendMessage(tt.msg)
			if ackError(ack) != tt.wantCode || ack.Attr("reason") != tt.wantReason {
				t.Fatalf("ack %v, want error=%q reason=%q", ack.Attrs, tt.wantCode, tt.wantReason)
			}
			if tt.wantCode == "" && ack.Attr("t") == "" {
				t.Fatalf("accepting ack without t: %v", ack.Attrs)
			}
		})
	}
	p.m0.waitFor("accepted message", isMessage("OK1"))
	// Nothing refused was delivered.
	p.m0.expectNone("refused message", func(n stanza.Node) bool { return n.Tag == "message" && n.Attr("id") != "OK1" })
}

// TestSection3_3_MetaUserNotOptedIn checks a Meta user writing to a third-party
// account of an integrator it did not allow: 403.
func TestSection3_3_MetaUserNotOptedIn(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	mustNoErr(t, p.e.g().SetOptIn(ctx, p.m, integratorID, false))
	ack := p.m0.sendMessage(textTo("X1", p.a.jid, p.a.jid))
	if ackError(ack) != "403" {
		t.Fatalf("ack %v, want 403", ack.Attrs)
	}
	mustNoErr(t, p.e.g().SetOptIn(ctx, p.m, integratorID, true))
	if ack := p.m0.sendMessage(textTo("X2", p.a.jid, p.a.jid)); ackError(ack) != "" {
		t.Fatalf("after opting in: %v", ack.Attrs)
	}
	// The sender's own other device is not a recipient: phash is over a.jid only.
	p.a.waitFor("message", isMessage("X2"))
}

// TestSection3_4_Delivery checks what each device receives: its own enc, with from,
// id, t and type, and edit passed through.
func TestSection3_4_Delivery(t *testing.T) {
	p := newPair(t)
	msg := textTo("D1", p.m, p.mDevices()...)
	msg.Attrs["edit"] = "1"
	ack := p.a.sendMessage(msg)
	if ackError(ack) != "" {
		t.Fatalf("refused: %v", ack.Attrs)
	}
	for _, dev := range []*rawClient{p.m0, p.m1} {
		got := dev.waitFor("message", isMessage("D1"))
		if got.Attr("from") != p.a.jid.String() || got.Attr("type") != "text" || got.Attr("edit") != "1" ||
			got.Attr("t") != ack.Attr("t") || got.HasAttr("participant") {
			t.Fatalf("%s got %v", dev.jid, got.Attrs)
		}
		encs := got.ChildrenByTag("enc")
		if len(encs) != 1 || encs[0].Text() != bytesB64("ct-"+dev.jid.String()) {
			t.Fatalf("%s got encs %v", dev.jid, encs)
		}
		dev.ack(got)
	}
	// A device the sender left out (phash over both, one enc) gets nothing.
	partial := textTo("D3", p.m, p.mDevices()...)
	partial.Attrs["phash"] = signal.ParticipantHash(p.mDevices())
	parts, _ := partial.Child("participants")
	parts.Content = parts.Children()[:1]
	partial.Content = []stanza.Node{parts}
	if ack := p.a.sendMessage(partial); ackError(ack) != "" {
		t.Fatalf("partial send refused: %v", ack.Attrs)
	}
	p.m0.waitFor("partial message", isMessage("D3"))
	p.m1.expectNone("message without an enc for it", isMessage("D3"))
	// A Meta device's reply carries its device JID as from.
	ack = p.m1.sendMessage(textTo("D2", p.a.jid, p.a.jid))
	if ackError(ack) != "" {
		t.Fatalf("reply refused: %v", ack.Attrs)
	}
	if got := p.a.waitFor("reply", isMessage("D2")); got.Attr("from") != p.m1.jid.String() {
		t.Fatalf("reply from %q, want %s", got.Attr("from"), p.m1.jid)
	}
}

// TestSection3_5_RetryResend checks that a message without phash is a retry answer:
// no phash check, delivered only to the named device.
func TestSection3_5_RetryResend(t *testing.T) {
	p := newPair(t)
	ack := p.a.sendMessage(msgNode("R1", p.m, "text", []jid.JID{p.m1.jid}, false))
	if ackError(ack) != "" {
		t.Fatalf("retry resend refused: %v", ack.Attrs)
	}
	p.m1.waitFor("resend", isMessage("R1"))
	p.m0.expectNone("resend to another device", isMessage("R1"))
	// A resend to a device of someone else is malformed.
	other := jid.New("491709999999", jid.ServerGateway)
	ack = p.a.sendMessage(msgNode("R2", p.m, "text", []jid.JID{other}, false))
	if ackError(ack) != "400" {
		t.Fatalf("resend to a stranger's device: %v, want 400", ack.Attrs)
	}
	// A resend to a device removed since is accepted and goes nowhere.
	mustNoErr(t, p.e.g().RemoveDevice(context.Background(), p.m1.jid))
	ack = p.a.sendMessage(msgNode("R3", p.m, "text", []jid.JID{p.m1.jid}, false))
	if ackError(ack) != "" {
		t.Fatalf("resend to a removed device: %v", ack.Attrs)
	}
	if depth, _ := p.e.g().QueueDepth(context.Background(), p.m1.jid); depth != 0 {
		t.Fatalf("removed device has %d queued", depth)
	}
}

// TestSection8_Block checks that a message to someone who blocked the sender is acked
// normally and never delivered, and flows again after unblocking.
func TestSection8_Block(t *testing.T) {
	p := newPair(t)
	blockIQ := func(action string) stanza.Node {
		return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "blocklist"},
			Content: []stanza.Node{{Tag: "item", Attrs: stanza.Attrs{"action": action, "jid": p.a.jid.String()}}}}
	}
	if code := iqCode(t, p.m0.iq(blockIQ("block"))); code != 0 {
		t.Fatalf("block: %d", code)
	}
	list := p.m0.iq(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "blocklist"}})
	if items := func() []stanza.Node { l, _ := list.Child("list"); return l.Children() }(); len(items) != 1 ||
		items[0].Attr("jid") != p.a.jid.String() {
		t.Fatalf("blocklist %v", list)
	}
	ack := p.a.sendMessage(textTo("B1", p.m, p.mDevices()...))
	if ackError(ack) != "" || ack.Attr("t") == "" {
		t.Fatalf("blocked send not acked normally: %v", ack.Attrs)
	}
	p.m0.expectNone("blocked message", isMessage("B1"))
	p.m1.expectNone("blocked message", isMessage("B1"))
	for _, d := range p.mDevices() {
		if depth, _ := p.e.g().QueueDepth(context.Background(), d); depth != 0 {
			t.Fatalf("%s has %d queued", d, depth)
		}
	}
	if code := iqCode(t, p.m0.iq(blockIQ("unblock"))); code != 0 {
		t.Fatalf("unblock: %d", code)
	}
	p.a.sendMessage(textTo("B2", p.m, p.mDevices()...))
	p.m0.waitFor("message after unblock", isMessage("B2"))
}

// TestSection8_RateLimits checks each limit of a third-party account with its
// retry_after: the burst window, the hourly window and new conversations per day,
// where a Meta user who wrote first is no new conversation.
func TestSection8_RateLimits(t *testing.T) {
	tests := []struct {
		name      string
		limits    func(*Limits)
		sends     int           // accepted before the refusal
		wantAfter time.Duration // retry_after
		peers     int           // distinct Meta users written to (new conversations)
	}{
		{"burst", func(l *Limits) { l.BurstMessages, l.BurstWindow = 3, 10*time.Second }, 3, 10 * time.Second, 1},
		{"hourly", func(l *Limits) { l.HourlyMessages = 4 }, 4, time.Hour, 1},
		{"new conversations", func(l *Limits) { l.NewConversations = 2 }, 2, 24 * time.Hour, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPair(t, func(c *Config) { tt.limits(&c.Limits) })
			e := p.e
			peers := []jid.JID{p.m}
			for i := 1; i < tt.peers; i++ {
				u, _ := e.metaUser("49170555000"+strconv.Itoa(i), UserOptions{})
				peers = append(peers, u)
			}
			devices := func(u jid.JID) []jid.JID {
				if u == p.m {
					return p.mDevices()
				}
				return []jid.JID{u}
			}
			for i := range tt.sends {
				peer := peers[min(i, len(peers)-1)]
				if ack := p.a.sendMessage(textTo("L"+strconv.Itoa(i), peer, devices(peer)...)); ackError(ack) != "" {
					t.Fatalf("send %d refused early: %v", i, ack.Attrs)
				}
			}
			last := peers[len(peers)-1]
			ack := p.a.sendMessage(textTo("OVER", last, devices(last)...))
			if ackError(ack) != "429" || ack.Attr("retry_after") != strconv.Itoa(int(tt.wantAfter.Seconds())) {
				t.Fatalf("ack %v, want 429 retry_after=%d", ack.Attrs, int(tt.wantAfter.Seconds()))
			}
			// Meta users are not rate limited.
			if ack := p.m0.sendMessage(textTo("M1", p.a.jid, p.a.jid)); ackError(ack) != "" {
				t.Fatalf("meta user limited: %v", ack.Attrs)
			}
			if tt.name == "new conversations" {
				// The last peer writes first: answering it is no new conversation.
				lc := e.connectDevice(last)
				if ack := lc.sendMessage(textTo("W1", p.a.jid, p.a.jid)); ackError(ack) != "" {
					t.Fatalf("peer write: %v", ack.Attrs)
				}
				if ack := p.a.sendMessage(textTo("OVER", last, devices(last)...)); ackError(ack) != "" {
					t.Fatalf("answer to a peer who wrote first refused: %v", ack.Attrs)
				}
			}
			e.clk.Advance(tt.wantAfter)
			if ack := p.a.sendMessage(textTo("AFTER", p.m, p.mDevices()...)); ackError(ack) != "" {
				t.Fatalf("after retry_after: %v", ack.Attrs)
			}
		})
	}
}

// TestSection8_ReportsRestrict checks that reports from enough distinct users
// restrict an account: it is told (account_sync) and its sends get 403
// reason="restricted" until the restriction ends.
func TestSection8_ReportsRestrict(t *testing.T) {
	p := newPair(t, func(c *Config) {
		c.Limits.ReportsBeforeRestriction = 2
		c.Limits.RestrictionLength = time.Hour
	})
	e := p.e
	u2, u2c := e.metaUser("491702222222", UserOptions{})
	report := func(c *rawClient, id string) {
		t.Helper()
		iq := stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "spam"}, Content: []stanza.Node{{Tag: "spam_list",
			Content: []stanza.Node{{Tag: "message", Attrs: stanza.Attrs{"id": id, "from": p.a.jid.String(), "t": "1700000000"}}}}}}
		if code := iqCode(t, c.iq(iq)); code != 0 {
			t.Fatalf("report: %d", code)
		}
	}
	report(p.m0, "M1")
	report(p.m1, "M2") // the same user again: one reporter
	if ack := p.a.sendMessage(textTo("OK", u2, u2)); ackError(ack) != "" {
		t.Fatalf("restricted after one reporter: %v", ack.Attrs)
	}
	report(u2c, "M3")
	n := p.a.waitFor("restriction", isNotification("account_sync"))
	r, ok := n.Child("restriction")
	wantUntil := strconv.FormatInt(e.clk.Now().Add(time.Hour).Unix(), 10)
	if !ok || r.Attr("reason") != "spam" || r.Attr("until") != wantUntil {
		t.Fatalf("restriction notification %v", n)
	}
	info, err := interop.ParseNotification(n)
	if ar, ok := info.(*interop.AccountRestricted); err != nil || !ok || ar.Reason != "spam" {
		t.Fatalf("client parses %v %v", info, err)
	}
	ack := p.a.sendMessage(textTo("R1", p.m, p.mDevices()...))
	if ackError(ack) != "403" || ack.Attr("reason") != "restricted" {
		t.Fatalf("restricted send: %v", ack.Attrs)
	}
	e.clk.Advance(time.Hour + time.Second)
	if ack := p.a.sendMessage(textTo("R2", p.m, p.mDevices()...)); ackError(ack) != "" {
		t.Fatalf("after the restriction: %v", ack.Attrs)
	}
}

func bytesB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
