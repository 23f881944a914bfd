package gateway

import (
	"context"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
)

func messenger(c *Config) {
	c.Network, c.Server, c.Product = NetworkMessenger, jid.ServerMessenger, waWa6.ClientPayload_INTEROP_MSGR
}

// TestSection1_Messenger checks a Messenger gateway beside a WhatsApp one on the same
// database: its own product (405 for WhatsApp's), users on msgr found by their phone,
// and no state shared between the networks.
func TestSection1_Messenger(t *testing.T) {
	db := sqltest.SQLite(t)
	wa := newEnvOn(t, db)
	ms := newEnvOn(t, db, messenger)
	ctx := context.Background()

	u := jid.New("100004567", jid.ServerMessenger)
	mustNoErr(t, ms.g().CreateUser(ctx, u, UserOptions{Phone: "491701111111", EEA: true}))
	mustNoErr(t, ms.g().SetOptIn(ctx, u, integratorID, true))
	if err := ms.g().CreateUser(ctx, jid.New("491701111111", jid.ServerGateway), UserOptions{}); err == nil {
		t.Fatal("a WhatsApp user was created on the Messenger gateway")
	}
	uc := ms.connectDevice(u)
	uc.uploadKeys(2)
	if users, err := wa.g().Users(ctx); err != nil || len(users) != 0 {
		t.Fatalf("WhatsApp sees Messenger users: %v %v", users, err)
	}

	// WhatsApp's product is refused by the Messenger gateway.
	_, first := ms.dialRaw(ms.payload("491701234567"))
	if first.Tag != "failure" || first.Attr("reason") != "405" {
		t.Fatalf("WhatsApp product on Messenger: %s %v", first.Tag, first.Attrs)
	}
	p := ms.payload("491701234567")
	p.Product = waWa6.ClientPayload_INTEROP_MSGR.Enum()
	a, first := ms.dialRaw(p)
	if first.Tag != "success" {
		t.Fatalf("Messenger login: %s %v", first.Tag, first.Attrs)
	}
	a.jid = jid.Interop(integratorID, "491701234567")
	a.expectOffline()
	a.uploadKeys(2)

	answer := a.iq(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "usync"}, Content: []stanza.Node{{Tag: "usync",
		Content: []stanza.Node{{Tag: "query", Content: []stanza.Node{{Tag: "contact"}}},
			{Tag: "list", Content: []stanza.Node{{Tag: "user", Content: []stanza.Node{{Tag: "contact", Content: "+491701111111"}}}}}}}}})
	user, _ := answer.Path("usync", "list", "user")
	if c, _ := user.Child("contact"); c.Attr("type") != "in" || user.Attr("jid") != u.String() {
		t.Fatalf("lookup on Messenger: %v", answer)
	}
	if ack := a.sendMessage(textTo("M1", u, u)); ackError(ack) != "" {
		t.Fatalf("send on Messenger: %v", ack.Attrs)
	}
	if got := uc.waitFor("message", isMessage("M1")); got.Attr("from") != a.jid.String() {
		t.Fatalf("delivered %v", got.Attrs)
	}
	// The same account on WhatsApp is another account, with no keys there.
	wc, first := wa.dialRaw(wa.payload("491701234567"))
	if first.Tag != "success" || first.Attr("new") != "1" {
		t.Fatalf("WhatsApp login of the same number: %s %v", first.Tag, first.Attrs)
	}
	wc.expectOffline()
}

// TestSection3_Robustness throws malformed and hostile stanzas at the gateway: none
// may crash it or end the connection, and each iq gets an answer.
func TestSection3_Robustness(t *testing.T) {
	p := newPair(t)
	to := p.m.String()
	hostile := []stanza.Node{
		{Tag: "message"},
		{Tag: "message", Attrs: stanza.Attrs{"id": "H1"}},
		{Tag: "message", Attrs: stanza.Attrs{"id": "H2", "to": "nobody", "type": "text"}},
		{Tag: "message", Attrs: stanza.Attrs{"id": "H3", "to": to, "type": "text"}, Content: []stanza.Node{{Tag: "participants",
			Content: []stanza.Node{{Tag: "to", Attrs: stanza.Attrs{"jid": "x"}}}}}},
		{Tag: "message", Attrs: stanza.Attrs{"id": "H4", "to": to, "type": "text"}, Content: []stanza.Node{{Tag: "participants",
			Content: []stanza.Node{{Tag: "to", Attrs: stanza.Attrs{"jid": to}, Content: []stanza.Node{{Tag: "enc"}, {Tag: "enc"}}}}}}},
		{Tag: "message", Attrs: stanza.Attrs{"id": "H5", "to": "1@g.us", "type": "text"}, Content: []stanza.Node{{Tag: "enc",
			Attrs: stanza.Attrs{"type": "skmsg"}, Content: "AAAA"}, {Tag: "enc", Attrs: stanza.Attrs{"type": "skmsg"}, Content: "AAAA"}}},
		{Tag: "receipt"},
		{Tag: "receipt", Attrs: stanza.Attrs{"to": "1@g.us", "id": "x"}},
		{Tag: "receipt", Attrs: stanza.Attrs{"to": to, "id": "x", "type": "weird"}},
		{Tag: "receipt", Attrs: stanza.Attrs{"to": "491709999999:4@s.whatsapp.net", "id": "x", "type": "retry"}},
		{Tag: "chatstate", Attrs: stanza.Attrs{"to": to}},
		{Tag: "chatstate", Attrs: stanza.Attrs{"to": "1@g.us"}, Content: []stanza.Node{{Tag: "composing"}}},
		{Tag: "ack"},
		{Tag: "ack", Attrs: stanza.Attrs{"class": "message"}},
		{Tag: "ack", Attrs: stanza.Attrs{"class": "iq", "id": "1"}},
		{Tag: "iq"},
		{Tag: "iq", Attrs: stanza.Attrs{"id": "I1", "type": "result"}},
		{Tag: "success"},
		{Tag: "stream:error", Attrs: stanza.Attrs{"code": "500"}},
	}
	for _, n := range hostile {
		p.a.send(n)
	}
	iqs := []stanza.Node{
		{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "encrypt"}, Content: []stanza.Node{{Tag: "key"}}},
		{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "encrypt"}, Content: []stanza.Node{{Tag: "key",
			Content: []stanza.Node{{Tag: "user", Attrs: stanza.Attrs{"jid": "1@g.us"}}}}}},
		{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "encrypt"}, Content: []stanza.Node{{Tag: "rotate"}}},
		{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "encrypt"}, Content: []stanza.Node{{Tag: "registration", Content: "AAAAAQ=="}}},
		{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "usync"}, Content: []stanza.Node{{Tag: "usync", Content: []stanza.Node{
			{Tag: "query", Content: []stanza.Node{{Tag: "devices"}}}, {Tag: "list", Content: []stanza.Node{{Tag: "user"}}}}}}},
		{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "w:g2", "to": "g.us"}, Content: []stanza.Node{{Tag: "create"}}},
		{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "w:g2", "to": "g.us"}, Content: []stanza.Node{{Tag: "create",
			Attrs: stanza.Attrs{"subject": "x"}, Content: []stanza.Node{{Tag: "participant", Attrs: stanza.Attrs{"jid": "1@g.us"}}}}}},
		{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "blocklist"}, Content: []stanza.Node{{Tag: "item",
			Attrs: stanza.Attrs{"action": "mute", "jid": to}}}},
		{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "spam"}, Content: []stanza.Node{{Tag: "spam_list",
			Content: []stanza.Node{{Tag: "message", Attrs: stanza.Attrs{"id": "1", "from": "1@g.us", "t": "1"}}}}}},
	}
	for i, iq := range iqs {
		answer := p.a.iq(iq)
		if answer.Attr("type") != "error" && answer.Attr("type") != "result" {
			t.Fatalf("iq %d: answer %v", i, answer.Attrs)
		}
	}
	if code := iqCode(t, p.a.iq(pingIQ())); code != 0 || !p.e.g().IsConnected(p.a.jid) {
		t.Fatalf("connection did not survive: %d", code)
	}
	// None of the broken messages reached the Meta user.
	p.m0.expectNone("broken message", isTag("message"))
}
