package connector

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// idempotentMatrix gives every ghost's send of a bridged message or reaction a
// transaction ID derived from what it bridges, instead of a random one.
//
// A Meta message is acked to the gateway (and removed from the outbox) only once it
// is in Matrix, so a crash between the homeserver accepting the event and bridgev2
// recording it makes the message come again. bridgev2 would send it with a new random
// transaction ID and the room would show it twice; with the derived ID the homeserver
// recognizes the retry and answers with the first event (Matrix's idempotent sends).
type idempotentMatrix struct {
	*matrix.Connector
	// refused is told about Matrix events bridgev2 refused for good before the network
	// connector saw them (too large, unsupported), so they are not replayed.
	refused func(ctx context.Context, eventID id.EventID)
}

// idempotentIntent is a ghost's intent whose sends carry derived transaction IDs.
type idempotentIntent struct {
	*matrix.ASIntent
}

var (
	_ bridgev2.MatrixConnector = (*idempotentMatrix)(nil)
	_ bridgev2.MatrixAPI       = (*idempotentIntent)(nil)
)

// makeSendsIdempotent wraps the bridge's Matrix connector (only the real one: test
// stubs have no homeserver to deduplicate). It runs after the Matrix connector's Init,
// so it can replace the one command of mautrix that expects the unwrapped type.
func makeSendsIdempotent(bridge *bridgev2.Bridge, refused func(ctx context.Context, eventID id.EventID)) {
	mx, ok := bridge.Matrix.(*matrix.Connector)
	if !ok {
		return
	}
	bridge.Matrix = &idempotentMatrix{Connector: mx, refused: refused}
	if proc, ok := bridge.Commands.(*commands.Processor); ok {
		discard := *matrix.CommandDiscardMegolmSession
		discard.Func = func(ce *commands.Event) {
			if mx.Crypto == nil {
				ce.Reply("This bridge instance doesn't have end-to-bridge encryption enabled")
				return
			}
			mx.Crypto.ResetSession(ce.Ctx, ce.RoomID)
			ce.Reply("Discarded the room's Megolm session: new keys are shared with the next message from WhatsApp or Messenger.")
		}
		proc.AddHandlers(&discard)
	}
}

// realMatrix returns the bridge's mautrix Matrix connector, through the wrapper.
func realMatrix(bridge *bridgev2.Bridge) (*matrix.Connector, bool) {
	switch mx := bridge.Matrix.(type) {
	case *matrix.Connector:
		return mx, true
	case *idempotentMatrix:
		return mx.Connector, true
	}
	return nil, false
}

// GhostIntent wraps the ghost's intent.
func (m *idempotentMatrix) GhostIntent(userID networkid.UserID) bridgev2.MatrixAPI {
	intent := m.Connector.GhostIntent(userID)
	if as, ok := intent.(*matrix.ASIntent); ok {
		return &idempotentIntent{ASIntent: as}
	}
	return intent
}

// SendMessageStatus passes the status on and reports a refusal that trying again
// would not change: bridgev2 refuses some events itself (a file over the room's size
// limit, an unsupported type) without calling the connector, which would otherwise
// have marked them handled. It marks those "retriable" with a reason that says
// otherwise, so the reason decides.
func (m *idempotentMatrix) SendMessageStatus(ctx context.Context, ms *bridgev2.MessageStatus, evt *bridgev2.MessageStatusEventInfo) {
	m.Connector.SendMessageStatus(ctx, ms, evt)
	if m.refused != nil && ms != nil && evt != nil && evt.SourceEventID != "" && isFinalRefusal(ms) {
		m.refused(ctx, evt.SourceEventID)
	}
}

// isFinalRefusal says whether a status refuses an event for good.
func isFinalRefusal(ms *bridgev2.MessageStatus) bool {
	if ms.Status == event.MessageStatusFail {
		return true
	}
	if ms.Status != event.MessageStatusRetriable {
		return false
	}
	switch ms.ErrorReason {
	case event.MessageStatusUnsupported, event.MessageStatusTooOld, event.MessageStatusNoPermission, event.MessageStatusUndecryptable:
		return true
	}
	return false
}

// SendMessage fills in a derived transaction ID when bridgev2 gave none.
func (i *idempotentIntent) SendMessage(ctx context.Context, roomID id.RoomID, eventType event.Type, content *event.Content, extra *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	if extra != nil && extra.TransactionID == "" {
		if txnID := bridgedTxnID(roomID, eventType, content, extra); txnID != "" {
			withID := *extra
			withID.TransactionID = txnID
			extra = &withID
		}
	}
	return i.ASIntent.SendMessage(ctx, roomID, eventType, content, extra)
}

// bridgedTxnID derives a transaction ID from the room, the event type, the bridged
// message or reaction and the content itself (so an edit, which names the message it
// edits, never reuses the message's ID). It returns "" for sends that bridge nothing
// identifiable, which keep a random ID.
func bridgedTxnID(roomID id.RoomID, eventType event.Type, content *event.Content, extra *bridgev2.MatrixSendExtra) string {
	h := sha256.New()
	write := func(parts ...string) {
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
	}
	write(roomID.String(), eventType.Type)
	switch {
	case extra.MessageMeta != nil:
		write("message", string(extra.MessageMeta.ID), string(extra.MessageMeta.PartID))
	case extra.ReactionMeta != nil:
		write("reaction", string(extra.ReactionMeta.MessageID), string(extra.ReactionMeta.MessagePartID),
			string(extra.ReactionMeta.SenderID), string(extra.ReactionMeta.EmojiID))
	default:
		return ""
	}
	if content != nil {
		data, err := json.Marshal(content)
		if err != nil {
			return ""
		}
		h.Write(data)
	}
	return "mmi." + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18])
}
