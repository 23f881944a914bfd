package connector

import (
	"context"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// A Meta user who reinstalls (a new identity key) and writes again: the portal gets
// a notice from the ghost that the safety number changed, and the message still
// arrives. A contact without a portal gets no notice.
func TestSafetyNumberNoticeAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	env, q := sb.env, sb.q
	const number = "491701234568"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := networkid.UserLoginID(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	waitFor(t, "keys on the gateway", func() bool {
		var acc struct {
			HasKeys bool `json:"has_keys"`
		}
		return env.Call(t, "GET", "/v1/accounts/"+account.String()+"?network=whatsapp", nil, &acc) == 200 && acc.HasKeys
	})

	newPeer := func(num string) jid.JID {
		var peer struct{ JID string }
		env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": num, "opt_in": []int{simtest.IntegratorID}}, &peer)
		j, err := jid.Parse(peer.JID)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	send := func(from jid.JID, text string) string {
		var sent struct{ ID string }
		env.MustCall(t, 200, "POST", "/v1/users/"+from.String()+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": text}, &sent)
		return sent.ID
	}

	// First exchange with both peers; only the first one's portal gets a room.
	peer, other := newPeer("+491709876500"), newPeer("+491709876501")
	send(peer, "first")
	first := q.next(t)
	portal, err := sb.br.GetPortalByKey(ctx, first.PortalKey)
	if err != nil {
		t.Fatal(err)
	}
	portal.MXID = "!peer:test.invalid"
	if err := portal.Save(ctx); err != nil {
		t.Fatal(err)
	}
	send(other, "hello")
	q.next(t)

	for _, p := range []jid.JID{other, peer} {
		env.MustCall(t, 200, "POST", "/v1/users/"+p.String()+"/reset-identity", nil, nil)
	}
	otherID := send(other, "after the reset")
	peerID := send(peer, "after the reset")

	var notices []*simplevent.Message[string]
	got := map[networkid.MessageID]bool{}
	deadline := time.After(20 * time.Second)
	for !got[ids.MakeMessageID(peer, peer, peerID)] || !got[ids.MakeMessageID(other, other, otherID)] || len(notices) == 0 {
		select {
		case evt := <-q.events:
			switch e := evt.(type) {
			case *simplevent.Message[string]:
				notices = append(notices, e)
			case *simplevent.Message[*waE2E.Message]:
				got[e.ID] = true
			}
		case <-deadline:
			t.Fatalf("after the reset: messages %v, %d notices", got, len(notices))
		}
	}
	// A notice queued late for the other contact would be a bug too.
	time.Sleep(300 * time.Millisecond)
	for len(q.events) > 0 {
		if e, ok := (<-q.events).(*simplevent.Message[string]); ok {
			notices = append(notices, e)
		}
	}
	if len(notices) != 1 {
		t.Errorf("%d notices for one change", len(notices))
	}
	for _, n := range notices {
		if n.PortalKey != portal.PortalKey || n.CreatePortal || n.Sender.Sender != ids.MakeUserID(peer) || n.Sender.IsFromMe {
			t.Errorf("notice meta %+v", n.EventMeta)
		}
		key, err := ids.ParseMessageID(n.ID)
		if err != nil || key.Chat != peer || !strings.HasPrefix(key.StanzaID, "identity-") {
			t.Errorf("notice id %q (%v)", n.ID, err)
		}
		conv, err := n.ConvertMessage(ctx, portal, nil)
		if err != nil || len(conv.Parts) != 1 {
			t.Fatalf("converted %+v, %v", conv, err)
		}
		c := conv.Parts[0].Content
		name, _ := sb.c.ghostName(peer, "", ids.WhatsApp)
		if conv.Parts[0].Type != event.EventMessage || c.MsgType != event.MsgNotice || c.Body != safetyNumberNotice(name) ||
			!strings.Contains(c.Body, "The safety number with "+name+" changed.") {
			t.Errorf("notice %s %q", c.MsgType, c.Body)
		}
	}
}
