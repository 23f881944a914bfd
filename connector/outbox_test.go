package connector

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// A message acked to the gateway but whose handling by bridgev2 failed (as a crash
// right after the ack would leave it) stays in the outbox and is bridged on the next
// Connect, exactly once.
func TestIncomingReplayedFromOutbox(t *testing.T) {
	sqltest.Run(t, testIncomingReplayedFromOutbox)
}

func testIncomingReplayedFromOutbox(t *testing.T, db *dbutil.Database) {
	ctx := context.Background()
	sb := startSimBridge(t, db)
	var crash atomic.Bool
	crash.Store(true)
	crashed := make(chan networkid.MessageID, 4)
	sb.c.queueRemoteEvent = func(ul *bridgev2.UserLogin, evt bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
		if crash.Load() {
			if m, ok := evt.(bridgev2.RemoteMessage); ok {
				crashed <- m.GetID()
			}
			return bridgev2.EventHandlingResultFailed.WithError(errors.New("simulated crash before bridgev2 handled it"))
		}
		return sb.q.queue(ul, evt)
	}

	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := string(ids.MakeUserLoginID(ids.WhatsApp, account))
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, loginID, status.StateConnected, "")
	client := sb.br.GetCachedUserLoginByID(networkid.UserLoginID(loginID)).Client.(*InteropClient)

	var peer struct{ JID string }
	sb.env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &peer)
	peerJID, _ := jid.Parse(peer.JID)
	var sent struct{ ID string }
	sb.env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": "keep me"}, &sent)
	wantID := ids.MakeMessageID(peerJID, peerJID, sent.ID)
	select {
	case id := <-crashed:
		if id != wantID {
			t.Fatalf("queued %s, want %s", id, wantID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the message never reached bridgev2's queue")
	}
	pending, err := sb.c.DB.PendingIncoming(ctx, loginID)
	if err != nil || len(pending) != 1 || pending[0].StanzaID != sent.ID || pending[0].Chat != peer.JID {
		t.Fatalf("outbox after the failed handling: %+v, %v", pending, err)
	}

	// The next connection replays it before anything else, and then forgets it.
	crash.Store(false)
	client.Disconnect()
	drainStates(sb.mx)
	client.Connect(ctx)
	msg := sb.q.next(t)
	if msg.ID != wantID {
		t.Fatalf("replayed %s, want %s", msg.ID, wantID)
	}
	conv, err := msg.ConvertMessage(ctx, nil, nil)
	if err != nil || len(conv.Parts) != 1 || conv.Parts[0].Content.Body != "keep me" {
		t.Fatalf("replayed message converted to %+v, %v", conv, err)
	}
	waitFor(t, "the outbox to empty", func() bool {
		pending, err := sb.c.DB.PendingIncoming(ctx, loginID)
		return err == nil && len(pending) == 0
	})

	// Exactly once: neither the gateway (it was acked) nor the outbox brings it again.
	waitState(t, sb.mx, loginID, status.StateConnected, "")
	client.Disconnect()
	drainStates(sb.mx)
	client.Connect(ctx)
	waitState(t, sb.mx, loginID, status.StateConnected, "")
	select {
	case evt := <-sb.q.events:
		t.Fatalf("bridged again: %T %+v", evt, evt)
	case <-time.After(time.Second):
	}

	// A message received live still goes straight through.
	sb.env.MustCall(t, 200, "POST", "/v1/users/"+peer.JID+"/messages", map[string]any{"to": account.String(), "kind": "text", "text": "live"}, &sent)
	if msg := sb.q.next(t); msg.ID != ids.MakeMessageID(peerJID, peerJID, sent.ID) {
		t.Errorf("live message %s", msg.ID)
	}
	waitFor(t, "the outbox to empty", func() bool {
		pending, err := sb.c.DB.PendingIncoming(ctx, loginID)
		return err == nil && len(pending) == 0
	})
}
