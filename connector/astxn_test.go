package connector

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/astxn"
	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// A Matrix message counts as handled once HandleMatrixMessage returned, whether it
// was sent or refused: only a crash before that may bring it back after a restart.
func TestHandleMatrixMessageMarksHandled(t *testing.T) {
	ctx := context.Background()
	db := bridgedb.New(sqltest.SQLite(t), zerolog.Nop())
	if err := db.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	evt := &event.Event{ID: id.EventID("$sent:example.org"), Type: event.EventMessage}
	other := &event.Event{ID: id.EventID("$pending:example.org"), Type: event.EventMessage}
	var stored []bridgedb.TxnEvent
	for _, e := range []*event.Event{evt, other} {
		body, _ := json.Marshal(e)
		stored = append(stored, bridgedb.TxnEvent{EventID: e.ID.String(), Body: body, ReceivedAt: time.Now()})
	}
	if err := db.PutTxn(ctx, "txn1", stored); err != nil {
		t.Fatal(err)
	}
	c := newTestConnector(t, nil)
	c.DB, c.tracker = db, astxn.New(db)
	ic := &InteropClient{Main: c}

	// Not connected: refused with a notice, and still handled.
	if _, err := ic.HandleMatrixMessage(ctx, &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Event: evt, Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "hi"},
	}}); err == nil {
		t.Fatal("a send without a portal or connection succeeded")
	}
	left, err := db.Unhandled(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].EventID != other.ID.String() {
		t.Fatalf("unhandled after the refusal: %+v", left)
	}
}

// The delivery guarantees need bridgev2 to report the real outcome of each event,
// which it only does without a per-portal buffer.
func TestInitTurnsOffPortalEventBuffer(t *testing.T) {
	c := newTestConnector(t, nil)
	cfg := &bridgeconfig.BridgeConfig{PortalEventBuffer: 64}
	br := bridgev2.NewBridge("test", sqltest.SQLite(t), zerolog.Nop(), cfg, &stubMatrix{}, c, commands.NewProcessor)
	if br.Config.PortalEventBuffer != 0 {
		t.Fatalf("portal_event_buffer = %d after Init, want 0", br.Config.PortalEventBuffer)
	}
}
