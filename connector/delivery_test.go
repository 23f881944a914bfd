package connector

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

func TestDeliveryReceiptFor(t *testing.T) {
	tests := []struct {
		name string
		in   bridgedb.Incoming
		want interop.Receipt
		err  bool
	}{
		{"direct", bridgedb.Incoming{Chat: "491702220002@s.whatsapp.net", Sender: "491702220002:1@s.whatsapp.net", StanzaID: "A1"},
			interop.Receipt{Chat: jid.New("491702220002", jid.ServerGateway), IDs: []string{"A1"}}, false},
		{"group", bridgedb.Incoming{Chat: "120363000000000001@g.us", Sender: "491702220002:1@s.whatsapp.net", StanzaID: "B2", IsGroup: true},
			interop.Receipt{Chat: jid.New("120363000000000001", jid.ServerGroup), Participant: jid.New("491702220002", jid.ServerGateway).WithDevice(1), IDs: []string{"B2"}}, false},
		{"bad chat", bridgedb.Incoming{Chat: "not a jid@", StanzaID: "C3"}, interop.Receipt{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := deliveryReceipt(&tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("error %v", err)
			}
			if tc.err {
				return
			}
			if got.Chat != tc.want.Chat || got.Participant != tc.want.Participant || got.Type != interop.ReceiptDelivered ||
				len(got.IDs) != 1 || got.IDs[0] != tc.want.IDs[0] {
				t.Errorf("receipt %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A message the login received is shown delivered in the Meta user's app: their
// devices get a delivery receipt for it. One that did not decrypt gets none.
func TestDeliveryReceiptAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := ids.MakeUserLoginID(ids.WhatsApp, account)
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	client := sb.br.GetCachedUserLoginByID(networkid.UserLoginID(loginID)).Client.(*InteropClient)

	var peer struct{ JID string }
	sb.env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &peer)
	var sent struct{ ID string }
	sb.env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": "hello"}, &sent)
	sb.q.next(t)

	in := &bridgedb.Incoming{LoginID: string(loginID), Chat: peer.JID, Sender: peer.JID, StanzaID: sent.ID, Message: []byte{}}
	client.sendDeliveryReceipt(ctx, &bridgedb.Incoming{LoginID: in.LoginID, Chat: peer.JID, Sender: peer.JID, StanzaID: "UNDECRYPTED"})
	client.sendDeliveryReceipt(ctx, in)
	var inbox struct {
		Items []struct {
			ID   string
			Data struct{ Receipt string }
		}
	}
	sb.env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID+"/inbox?since=0&wait=10s&kind=receipt&id="+sent.ID, nil, &inbox)
	// Once handleMessage sends it too, the receipt comes twice here.
	if len(inbox.Items) == 0 {
		t.Fatalf("no receipt for %s", sent.ID)
	}
	for _, item := range inbox.Items {
		if item.Data.Receipt != "delivered" {
			t.Errorf("the peer's receipts for %s: %+v", sent.ID, inbox.Items)
		}
	}
	sb.env.MustCall(t, 200, "GET", "/v1/users/"+peer.JID+"/inbox?since=0&kind=receipt&id=UNDECRYPTED", nil, &inbox)
	if len(inbox.Items) != 0 {
		t.Errorf("a message that did not decrypt was receipted: %+v", inbox.Items)
	}
}
