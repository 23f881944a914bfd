package connector

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// The block and unblock commands keep bridgev2's portal.UserBlocked (shown to Matrix
// clients in the room's bridge info) in step with the gateway, saved to the database;
// a block that fails changes nothing.
func TestBlockCommandsKeepPortalUserBlocked(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	const number = "491701234573"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := networkid.UserLoginID(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	var p struct{ JID string }
	sb.env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876506", "opt_in": []int{simtest.IntegratorID}}, &p)
	peer, _ := jid.Parse(p.JID)
	key := ids.MakePortalKey(peer, loginID)
	portal, err := sb.br.GetPortalByKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := sb.br.GetUserByMXID(ctx, "@alice:test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	run := func(cmd func(*commands.Event)) string {
		bot := &replyRecorder{}
		cmd(&commands.Event{Bot: bot, Bridge: sb.br, Portal: portal, User: alice, Ctx: ctx, Log: &log, OrigRoomID: "!portal:test.invalid"})
		return strings.Join(bot.replies, "\n")
	}
	stored := func() bool {
		t.Helper()
		blocked, err := sb.br.DB.Portal.GetAllBlockedDMsOf(ctx, loginID)
		if err != nil {
			t.Fatal(err)
		}
		return len(blocked) == 1 && blocked[0] == key
	}

	if reply := run(sb.c.cmdBlock); strings.TrimSpace(reply) != "Blocked this contact." {
		t.Fatalf("block replied %q", reply)
	}
	if !portal.UserBlocked || !stored() {
		t.Errorf("after block: UserBlocked %v, stored %v", portal.UserBlocked, stored())
	}
	if reply := run(sb.c.cmdUnblock); strings.TrimSpace(reply) != "Unblocked this contact." {
		t.Fatalf("unblock replied %q", reply)
	}
	if portal.UserBlocked || stored() {
		t.Errorf("after unblock: UserBlocked %v, stored %v", portal.UserBlocked, stored())
	}

	sb.br.GetCachedUserLoginByID(loginID).Client.Disconnect()
	if reply := run(sb.c.cmdBlock); !strings.HasPrefix(strings.TrimSpace(reply), "Failed:") {
		t.Fatalf("block while disconnected replied %q", reply)
	}
	if portal.UserBlocked || stored() {
		t.Error("a failed block marked the portal blocked")
	}
}
