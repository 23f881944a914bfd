package connector

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// A Meta user's "played" receipt, sent through the simulated gateway, reaches Matrix as
// a read receipt for the message: Matrix has no "played", and hearing it means having
// read it.
func TestPlayedReceiptAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	sb.c.Config.EnableReadReceipts = true
	env, q := sb.env, sb.q
	const number = "491701234572"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := networkid.UserLoginID(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	client := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)
	var p struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876505", "opt_in": []int{simtest.IntegratorID}}, &p)
	peer, _ := jid.Parse(p.JID)
	portalKey := ids.MakePortalKey(peer, loginID)

	resp, err := client.HandleMatrixMessage(ctx, &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "listen to this"},
		Portal:  &bridgev2.Portal{Portal: &database.Portal{PortalKey: portalKey}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ours := resp.DB.ID
	key, _ := ids.ParseMessageID(ours)
	env.MustCall(t, 200, "POST", "/v1/users/"+peer.String()+"/receipts", map[string]any{"chat": account.String(), "ids": []string{key.StanzaID}, "type": "played"}, nil)
	read := nextEvent(t, q, func(r *simplevent.Receipt) bool {
		return r.Type == bridgev2.RemoteEventReadReceipt && len(r.Targets) > 0 && r.Targets[0] == ours
	})
	if read.LastTarget != ours || read.PortalKey != portalKey || read.Sender.Sender != ids.MakeUserID(peer) || read.ReadUpTo.IsZero() {
		t.Errorf("read receipt for played %+v", read)
	}
}
