package interop

import (
	"context"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// FuzzIncoming feeds any frame to every parser of gateway input and to the router of
// a live connection: none may panic, whatever the gateway sends.
func FuzzIncoming(f *testing.F) {
	for _, seed := range []string{
		`<iq type="result" id="1"><count value="3"/></iq>`,
		`<iq type="result"><list><user jid="1@s.whatsapp.net"><registration>AQIDBA==</registration><type>BQ==</type><identity>AA==</identity><skey><id>AAAB</id></skey><key/></user></list></iq>`,
		`<iq type="result"><usync><list><user jid="1@s.whatsapp.net"><devices><device-list><device id="0"/></device-list></devices><contact type="in">+1</contact></user></list></usync></iq>`,
		`<iq type="result"><media_conn auth="a" ttl="1"><host hostname="a.b:1"/></media_conn></iq>`,
		`<notification type="devices" from="1@s.whatsapp.net"><add><device jid="1:2@s.whatsapp.net"/></add></notification>`,
		`<notification type="account_sync"><restriction reason="spam" until="9"/></notification>`,
		`<receipt from="1@s.whatsapp.net" id="a" type="read" t="1"><list><item id="b"/></list></receipt>`,
		`<chatstate from="1-2@g.us" participant="1@s.whatsapp.net"><composing media="audio"/></chatstate>`,
		`<ack class="message" id="x" error="429" retry_after="3"/>`,
		`<ib><offline count="2"/></ib>`,
		`<stream:error><conflict type="replaced"/></stream:error>`,
		`<failure reason="401"/>`,
	} {
		f.Add([]byte(seed))
	}
	asked := []jid.JID{jid.MustParse("1@s.whatsapp.net"), jid.MustParse("1:2@s.whatsapp.net")}
	f.Fuzz(func(t *testing.T, frame []byte) {
		n, err := stanza.Unmarshal(frame)
		if err != nil {
			return
		}
		_, _ = parsePreKeyCount(n)
		_, _ = parsePreKeyFetch(n, asked)
		_, _ = parseDevicesAnswer(n, asked)
		_, _ = parseContactAnswer(n, []string{"+1", "+2"})
		_, _ = parseMediaConn(n, time.Time{})
		_, _ = parseMessageAck("x", n)
		_, _ = ParseNotification(n)
		_, _ = ParseReceipt(n)
		_, _ = ParseChatState(n)
		_, _ = BuildAck(n)
		_ = errorFromChild(n)

		c := NewClient(Config{})
		c.events = newEventQueue()
		cn := newConn(context.Background(), &fakeConn{closed: make(chan struct{})})
		defer cn.drop(ErrDisconnected)
		_ = c.terminalStanza(n)
		_, _ = c.route(cn, n)
	})
}
