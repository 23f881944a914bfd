package connector

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// respErr returns err as bridgev2's RespError, failing the test if it is not one.
func respErr(t *testing.T, err error) bridgev2.RespError {
	t.Helper()
	var re bridgev2.RespError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a RespError", err, err)
	}
	return re
}

// ghostMatrix gives ghosts an intent (none), which resolving a ghost needs and the
// shared stub lacks.
type ghostMatrix struct{ *stubMatrix }

func (ghostMatrix) GhostIntent(networkid.UserID) bridgev2.MatrixAPI { return nil }

func TestResolveIdentifierAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	// Swapped before the login starts anything that could read it.
	sb.br.Matrix = ghostMatrix{sb.mx}
	const number = "491701234567"
	loginID := ids.MakeUserLoginID(ids.WhatsApp, jid.Interop(simtest.IntegratorID, number))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	client := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)

	var peer, closed struct{ JID string }
	sb.env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &peer)
	sb.env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491705555555"}, &closed)
	peerJID := jid.MustParse(peer.JID)

	// An opted-in user resolves to their ghost, and to this login's portal with them.
	for _, input := range []string{"+491709876543", " +49 170 9876543", "00491709876543"} {
		resp, err := client.ResolveIdentifier(ctx, input, true)
		if err != nil {
			t.Fatalf("%q: %v", input, err)
		}
		if resp.UserID != networkid.UserID(peer.JID) || resp.Ghost == nil || resp.Ghost.ID != resp.UserID {
			t.Errorf("%q: user %q, ghost %+v", input, resp.UserID, resp.Ghost)
		}
		if resp.UserInfo == nil || resp.UserInfo.Name == nil || !strings.Contains(*resp.UserInfo.Name, "170 9876543") {
			t.Errorf("%q: user info %+v", input, resp.UserInfo)
		}
		if resp.Chat == nil || resp.Chat.PortalKey != ids.MakePortalKey(peerJID, loginID) ||
			resp.Chat.PortalInfo == nil || resp.Chat.PortalInfo.Members.OtherUserID != resp.UserID {
			t.Errorf("%q: chat %+v", input, resp.Chat)
		}
	}
	if resp, err := client.ResolveIdentifier(ctx, "+491709876543", false); err != nil || resp.Chat != nil || resp.UserID != networkid.UserID(peer.JID) {
		t.Errorf("without createChat: %+v, %v", resp, err)
	}

	// Not opted in and not registered read the same, so no one can probe opt-in state.
	network := networkDisplayName(sb.c, ids.WhatsApp)
	for _, tc := range []struct{ name, input, shown string }{
		{"not opted in", "+491705555555", "+49 170 5555555"},
		{"unknown", "+491700000001", "+49 170 0000001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.ResolveIdentifier(ctx, tc.input, true)
			if resp != nil {
				t.Errorf("response %+v", resp)
			}
			re := respErr(t, err)
			want := tc.shown + " can't be reached from this service: they have not turned on third-party chats on " +
				network + " or have not allowed this service"
			if re.ErrCode != mautrix.MNotFound.ErrCode || re.Err != want {
				t.Errorf("error %s %q, want %q", re.ErrCode, re.Err, want)
			}
		})
	}

	// Malformed numbers say which format is wanted, without asking the gateway.
	for _, input := range []string{"491701234567", "+49 170 abc", "+0491701234567", "+12", ""} {
		_, err := client.ResolveIdentifier(ctx, input, true)
		re := respErr(t, err)
		if re.ErrCode != mautrix.MInvalidParam.ErrCode || !strings.Contains(re.Err, "like +491701234567") {
			t.Errorf("%q: %s %q", input, re.ErrCode, re.Err)
		}
	}

	// A disconnected login says so instead of pretending the number is unreachable.
	client.Disconnect()
	_, err := client.ResolveIdentifier(ctx, "+491709876543", true)
	if re := respErr(t, err); re.StatusCode != http.StatusServiceUnavailable || !strings.Contains(re.Err, "Not connected to "+network) {
		t.Errorf("disconnected: %d %q", re.StatusCode, re.Err)
	}
}

// Messenger logins resolve users by the number they gave Messenger, or by their id.
func TestResolveIdentifierMessengerAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	sb.br.Matrix = ghostMatrix{sb.mx}
	loginID := ids.MakeUserLoginID(ids.Messenger, jid.Interop(simtest.IntegratorID, "33612345678"))
	sb.login(t, "messenger", "33612345678")
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	client := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)

	var peer struct{ JID string }
	sb.env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"fbid": "100001", "phone": "+33698765432", "eea": true, "opt_in": []int{simtest.IntegratorID}}, &peer)
	if peer.JID != "100001@msgr" {
		t.Fatalf("simulated user %q", peer.JID)
	}
	for _, input := range []string{"+33698765432", "100001", "100001@msgr"} {
		resp, err := client.ResolveIdentifier(ctx, input, true)
		if err != nil {
			t.Fatalf("%q: %v", input, err)
		}
		if resp.UserID != "100001@msgr" || resp.Chat == nil || resp.Chat.PortalKey != ids.MakePortalKey(jid.MustParse(peer.JID), loginID) {
			t.Errorf("%q: user %q, chat %+v", input, resp.UserID, resp.Chat)
		}
	}
	_, err := client.ResolveIdentifier(ctx, "+33611111111", false)
	want := "+33 6 11 11 11 11 can't be reached from this service: they have not turned on third-party chats on " +
		networkDisplayName(sb.c, ids.Messenger) + " or have not allowed this service"
	if re := respErr(t, err); re.ErrCode != mautrix.MNotFound.ErrCode || re.Err != want {
		t.Errorf("unreachable: %s %q, want %q", re.ErrCode, re.Err, want)
	}
}

func TestParseMessengerID(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  string
	}{
		{"1000042", "1000042@msgr"},
		{" 1000042@msgr ", "1000042@msgr"},
		{"+491701234567", ""},
		{"0123", ""},
		{"1000042@s.whatsapp.net", ""},
		{"", ""},
		{"123456789012345678901", ""},
	} {
		got, err := parseMessengerID(tc.input)
		if tc.want == "" {
			if re := respErr(t, err); re.ErrCode != mautrix.MInvalidParam.ErrCode || !strings.Contains(re.Err, "like 1000042") {
				t.Errorf("%q: %s %q", tc.input, re.ErrCode, re.Err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%q: %v, %v; want %s", tc.input, got, err, tc.want)
		}
	}
}
