package connector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/callbacks"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// Every refusal becomes a notice in the room that says what happened in words.
func TestSendError(t *testing.T) {
	ic := testClient(t)
	tests := []struct {
		name    string
		err     error
		reason  event.MessageStatusReason
		certain bool
		final   bool // FAIL_PERMANENT: sending again gets the same answer
		want    string
	}{
		{"not opted in", errcode.Parse("403", "", errcode.ReasonOptIn, ""), event.MessageStatusNoPermission, true, true, "have not turned on third-party chats for this service on WhatsApp"},
		{"restricted", errcode.Parse("403", "", errcode.ReasonRestricted, ""), event.MessageStatusNoPermission, true, true, "restricted from sending"},
		{"no devices", fmt.Errorf("prepare: %w", interop.ErrNoDevices), event.MessageStatusNoPermission, true, true, "have not turned on third-party chats"},
		{"unsupported", errcode.New(406), event.MessageStatusUnsupported, true, true, "does not accept this kind of message"},
		{"too large", errcode.New(413), event.MessageStatusUnsupported, true, true, "too large"},
		{"no such user", errcode.New(404), event.MessageStatusGenericError, true, true, "WhatsApp has no user 491709876543@s.whatsapp.net"},
		{"other code", errcode.New(400), event.MessageStatusGenericError, true, false, "refused the message (400)"},
		{"transport", interop.ErrDisconnected, event.MessageStatusGenericError, false, false, "try again later"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ic.sendError("491709876543@s.whatsapp.net", tc.err)
			var ms bridgev2.MessageStatus
			if !errors.As(err, &ms) || !errors.Is(err, tc.err) {
				t.Fatalf("got %#v", err)
			}
			if !ms.SendNotice || ms.IsCertain != tc.certain || ms.ErrorReason != tc.reason || !strings.Contains(ms.Message, tc.want) {
				t.Errorf("status %+v, want %q", ms, tc.want)
			}
			if final := ms.Status == event.MessageStatusFail; final != tc.final {
				t.Errorf("status %q, want final = %v", ms.Status, tc.final)
			}
		})
	}
}

// Sending without a connection, or content that is neither text nor a file, is refused
// with a notice.
func TestHandleMatrixMessageRefusals(t *testing.T) {
	ic := testClient(t)
	tests := []struct {
		name    string
		content *event.MessageEventContent
		portal  string
		want    error
	}{
		{"location", &event.MessageEventContent{MsgType: event.MsgLocation, Body: "here", GeoURI: "geo:52.5,13.4"}, "491709876543@s.whatsapp.net", ErrNotImplemented},
		{"group, not connected", &event.MessageEventContent{MsgType: event.MsgText, Body: "x"}, "120363012345678@g.us", ErrNotConnected},
		{"not connected", &event.MessageEventContent{MsgType: event.MsgText, Body: "x"}, "491709876543@s.whatsapp.net", ErrNotConnected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &bridgev2.Portal{Portal: testPortalRow(tc.portal)}
			_, err := ic.HandleMatrixMessage(context.Background(), &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{Content: tc.content, Portal: p}})
			var ms bridgev2.MessageStatus
			if !errors.Is(err, tc.want) || !errors.As(err, &ms) || !ms.SendNotice {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// Push connects known logins only.
func TestPushUnknownAccount(t *testing.T) {
	c := newTestConnector(t, nil)
	newTestBridge(t, sqltest.SQLite(t), c)
	ctx := context.Background()
	for _, tc := range []struct{ network, account string }{
		{"whatsapp", "12-491701234567@interop"},
		{"instagram", "12-491701234567@interop"},
	} {
		account, err := jid.Parse(tc.account)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Push(ctx, tc.network, account, 1); !errors.Is(err, callbacks.ErrUnknownAccount) {
			t.Errorf("%s %s: want ErrUnknownAccount, got %v", tc.network, tc.account, err)
		}
	}
}

// A gateway whose certificate does not lead to the configured root key is reported
// as such (socket.Dial never sends the token to it).
func TestUntrustedGateway(t *testing.T) {
	env := simtest.Start(t)
	c := newTestConnector(t, func(nc *config.NetworkConfig) {
		// testSection's root key is not the simulator's.
		nc.WhatsApp.GatewayURL = env.Sim.GatewayURL("whatsapp")
		nc.WhatsApp.IntegratorID = simtest.IntegratorID
	})
	br, mx := newTestBridge(t, sqltest.SQLite(t), c)
	ctx := context.Background()
	alice, err := br.GetUserByMXID(ctx, "@alice:test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	proc, _ := c.CreateLogin(ctx, alice, LoginFlowIDPhoneNumber)
	if _, err := proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(ctx, map[string]string{"network": "whatsapp", "phone_number": "+491701234567"}); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, mx, "whatsapp:1-491701234567", status.StateUnknownError, StateUntrustedGateway)
	if !strings.Contains(st.Message, "root_public_key") {
		t.Errorf("message %q", st.Message)
	}
}

func testPortalRow(id string) *database.Portal {
	return &database.Portal{PortalKey: networkid.PortalKey{ID: networkid.PortalID(id), Receiver: "whatsapp:12-491701234567"}}
}
