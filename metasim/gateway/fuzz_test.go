package gateway

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// fuzzSeeds are stanzas from the protocol, well and badly formed.
var fuzzSeeds = []string{
	`<message id="1" to="491701111111@s.whatsapp.net" type="text" phash="2:AAAAAA"><participants><to jid="491701111111@s.whatsapp.net"><enc v="2" type="msg">AAAA</enc></to></participants></message>`,
	`<message id="2" to="120363000000000001@g.us" type="media"><enc v="2" type="skmsg" mediatype="image">AAAA</enc></message>`,
	`<message id="3" to="status@broadcast" type="text"/>`,
	`<receipt to="491701111111:1@s.whatsapp.net" id="1" type="retry"><retry count="1" id="1" t="1" v="1"/><registration>AAAAAQ==</registration></receipt>`,
	`<receipt to="120363000000000001@g.us" participant="491701111111@s.whatsapp.net" id="1" type="read" t="1"/>`,
	`<chatstate to="491701111111@s.whatsapp.net"><composing media="audio"/></chatstate>`,
	`<ack class="message" id="1" to="491701111111@s.whatsapp.net"/>`,
	`<iq id="1" type="get" xmlns="encrypt"><key><user jid="491701111111@s.whatsapp.net"/></key></iq>`,
	`<iq id="2" type="set" xmlns="encrypt"><registration>AAAAAQ==</registration><type>BQ==</type><identity>AAAA</identity></iq>`,
	`<iq id="3" type="get" xmlns="usync"><usync><query><devices/><contact/></query><list><user jid="491701111111@s.whatsapp.net"><contact>+49</contact></user></list></usync></iq>`,
	`<iq id="4" type="set" xmlns="w:g2" to="g.us"><create subject="s"><participant jid="491701111111@s.whatsapp.net"/></create></iq>`,
	`<iq id="5" type="set" xmlns="w:g2" to="120363000000000001@g.us"><description id="1"><body>x</body></description></iq>`,
	`<iq id="6" type="set" xmlns="spam"><spam_list><message id="1" from="491701111111@s.whatsapp.net" t="1"/></spam_list></iq>`,
	`<iq id="7" type="set" xmlns="blocklist"><item action="block" jid="491701111111@s.whatsapp.net"/></iq>`,
	`<iq id="8" type="set" xmlns="w:m"><media_conn/></iq>`,
}

// FuzzParseMessage checks that no message stanza makes the structure check panic.
func FuzzParseMessage(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		n, err := stanza.Unmarshal(frame)
		if err != nil || n.Tag != "message" {
			return
		}
		msg, ref := parseMessage(n)
		if (msg == nil) == (ref == nil) {
			t.Fatalf("parseMessage returned message %v and refusal %v", msg, ref)
		}
	})
}

// FuzzSession sends every decodable stanza to a live gateway from a third-party
// account: the gateway must neither crash nor drop the connection, and must still
// answer a ping after it.
func FuzzSession(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	e := newEnv(f)
	m := jid.New("491701111111", jid.ServerGateway)
	mustNoErr(f, e.g().CreateUser(context.Background(), m, UserOptions{}))
	mustNoErr(f, e.g().SetOptIn(context.Background(), m, integratorID, true))
	a := e.account("491701234567")
	fc := a.fc
	var round int
	f.Fuzz(func(t *testing.T, frame []byte) {
		n, err := stanza.Unmarshal(frame)
		if err != nil || n.Tag == "stream:error" {
			return
		}
		round++
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := fc.WriteFrame(ctx, frame); err != nil {
			t.Fatalf("write: %v", err)
		}
		id := "PING" + strconv.Itoa(round)
		ping, _ := stanza.Marshal(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"id": id, "type": "get", "xmlns": "w:p",
			"to": jid.ServerGateway}})
		if err := fc.WriteFrame(ctx, ping); err != nil {
			t.Fatalf("write ping: %v", err)
		}
		deadline := time.After(waitLong)
		for {
			select {
			case got := <-a.in:
				if got.Tag == "stream:error" {
					t.Fatalf("gateway ended the connection: %v", got.Attrs)
				}
				if got.Tag == "iq" && got.Attr("id") == id {
					return
				}
			case <-a.done:
				t.Fatal("connection closed")
			case <-deadline:
				t.Fatal("no ping answer")
			}
		}
	})
}
