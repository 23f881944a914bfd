package connector

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
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

// An outbox row that bridgev2 fails to handle stays for maxIncomingAttempts tries and
// is then dropped; a row that cannot be read is dropped at once; what was handled
// (or deliberately ignored) is deleted.
func TestBridgeIncomingFromOutbox(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, raw *dbutil.Database) {
		ctx := context.Background()
		db := bridgedb.New(raw, zerolog.Nop())
		if err := db.Upgrade(ctx); err != nil {
			t.Fatal(err)
		}
		const loginID = "whatsapp:12-491701234567"
		peer := jid.MustParse("491709876543@s.whatsapp.net")
		var calls int
		var result bridgev2.EventHandlingResult
		ic := &InteropClient{
			Main:      &InteropConnector{DB: db},
			UserLogin: &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: loginID}},
			Account:   jid.Interop(12, "491701234567"),
		}
		ic.queueRemoteEvent = func(bridgev2.RemoteEvent) bridgev2.EventHandlingResult {
			calls++
			return result
		}
		text := &interop.DecryptedMessage{
			Info:    interop.MessageInfo{ID: "T1", Chat: peer, Sender: peer, Type: "text", Timestamp: time.UnixMilli(1_700_000_000_000)},
			Message: &waE2E.Message{Conversation: proto.String("hi")},
		}
		undecryptable := &interop.DecryptedMessage{
			Info:          interop.MessageInfo{ID: "U1", Chat: peer, Sender: peer, Type: "text"},
			Undecryptable: &interop.UndecryptableMessage{},
		}
		for _, tc := range []struct {
			name      string
			msg       *interop.DecryptedMessage
			corrupt   bool
			result    bridgev2.EventHandlingResult
			runs      int
			wantCalls int
			wantLeft  bool
		}{
			{"handled", text, false, bridgev2.EventHandlingResultSuccess, 1, 1, false},
			{"undecryptable is queued as a notice", undecryptable, false, bridgev2.EventHandlingResultSuccess, 1, 1, false},
			{"failing below the limit", text, false, bridgev2.EventHandlingResultFailed, maxIncomingAttempts - 1, maxIncomingAttempts - 1, true},
			{"failing up to the limit", text, false, bridgev2.EventHandlingResultFailed, maxIncomingAttempts, maxIncomingAttempts, false},
			{"unreadable row", text, true, bridgev2.EventHandlingResultSuccess, 1, 0, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				in, err := ic.toIncoming(tc.msg)
				if err != nil {
					t.Fatal(err)
				}
				if tc.corrupt {
					in.Chat = "not a jid@@"
				}
				if err := db.PutIncoming(ctx, in); err != nil {
					t.Fatal(err)
				}
				calls, result = 0, tc.result
				for range tc.runs {
					pending, err := db.PendingIncoming(ctx, loginID)
					if err != nil || len(pending) != 1 {
						t.Fatalf("pending %d, %v", len(pending), err)
					}
					ic.bridgeIncoming(ctx, pending[0], time.Time{})
				}
				pending, err := db.PendingIncoming(ctx, loginID)
				if err != nil {
					t.Fatal(err)
				}
				if calls != tc.wantCalls || (len(pending) == 1) != tc.wantLeft {
					t.Errorf("queued %d times, %d left; want %d, left=%v", calls, len(pending), tc.wantCalls, tc.wantLeft)
				}
				if err := db.DeleteLoginIncoming(ctx, loginID); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

// A row read back is the message that was stored.
func TestIncomingRoundTrip(t *testing.T) {
	ic := &InteropClient{UserLogin: &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: "messenger:1-33612345678"}}}
	dev, _ := jid.Parse("1000042:2@msgr")
	group, _ := jid.Parse("1203630001@g.us")
	for _, tc := range []struct {
		name string
		msg  *interop.DecryptedMessage
	}{
		{"text", &interop.DecryptedMessage{
			Info:    interop.MessageInfo{ID: "A", Chat: dev.ToUser(), Sender: dev, Type: "text", Timestamp: time.UnixMilli(1_700_000_000_000), PushName: "Bob"},
			Message: &waE2E.Message{Conversation: proto.String("hi")},
		}},
		{"group media edit", &interop.DecryptedMessage{
			Info:    interop.MessageInfo{ID: "B", Chat: group, Sender: dev, IsGroup: true, Type: "media", MediaType: "image", Edit: "1"},
			Message: &waE2E.Message{},
		}},
		{"undecryptable", &interop.DecryptedMessage{
			Info:          interop.MessageInfo{ID: "C", Chat: dev.ToUser(), Sender: dev, Type: "text"},
			Undecryptable: &interop.UndecryptableMessage{},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := ic.toIncoming(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fromIncoming(in)
			if err != nil {
				t.Fatal(err)
			}
			if got.Info != tc.msg.Info || !proto.Equal(got.Message, tc.msg.Message) ||
				(got.Message == nil) != (tc.msg.Message == nil) || (got.Undecryptable == nil) != (tc.msg.Undecryptable == nil) {
				t.Errorf("read back %+v, want %+v", got, tc.msg)
			}
		})
	}
}
