package connector

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/simplevent"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// handleMessage decrypts one <message> and bridges it through the outbox.
//
// Account.HandleMessage acks after deliver returned and the ratchet step committed.
// deliver runs inside the Signal store's transaction, which on SQLite holds the
// database's write lock (_txlock=immediate), so bridgev2 cannot handle the event from
// inside deliver: its own writes would wait for that lock. deliver therefore only
// writes the message to the outbox (database.PutIncoming) with the transaction's ctx,
// so the row commits with the ratchet step, before the ack. Once HandleMessage
// returned, the message is queued to bridgev2 and its row deleted when bridgev2 took
// it; a crash in between leaves the row, which the next Connect replays
// (replayIncoming). A replay of a message bridgev2 already handled before the crash is
// dropped by bridgev2 itself: its message table already holds the deterministic
// message ID (chat, sender, stanza id).
func (ic *InteropClient) handleMessage(ctx context.Context, node stanza.Node) {
	log := zerolog.Ctx(ctx)
	acc := ic.account()
	if acc == nil {
		return
	}
	received := time.Now()
	var got *bridgedb.Incoming
	outcome, err := acc.HandleMessage(ctx, node, func(ctx context.Context, m *interop.DecryptedMessage) error {
		in, err := ic.toIncoming(m)
		if err != nil {
			return err
		}
		if err := ic.Main.DB.PutIncoming(ctx, in); err != nil {
			return err
		}
		got = in
		return nil
	})
	if outcome == interop.OutcomeUndecryptable {
		ic.Main.metrics.DecryptFailed(string(ic.Network))
	}
	if err != nil {
		log.Err(err).Msg("Failed to handle incoming message")
		return
	}
	if got == nil {
		log.Debug().Str("outcome", string(outcome)).Msg("Incoming message delivered nothing")
		return
	}
	// The message is safe in the outbox: tell the sender's phone it was delivered.
	ic.sendDeliveryReceipt(ctx, got)
	ic.waitReplayed(ctx)
	ic.bridgeIncoming(ctx, got, received)
}

// replayIncoming bridges the messages left in the outbox by a crash or a failed
// queueing, oldest first. The run loop starts it as it connects; messages received
// on the new connection wait for it (waitReplayed).
func (ic *InteropClient) replayIncoming(ctx context.Context) {
	log := zerolog.Ctx(ctx)
	pending, err := ic.Main.DB.PendingIncoming(ctx, string(ic.UserLogin.ID))
	if err != nil {
		log.Err(err).Msg("Failed to read the outbox of incoming messages")
		return
	}
	if len(pending) > 0 {
		log.Info().Int("count", len(pending)).Msg("Replaying incoming messages not yet bridged")
	}
	for _, in := range pending {
		if ctx.Err() != nil {
			return
		}
		ic.bridgeIncoming(ctx, in, in.ReceivedAt)
	}
}

// bridgeIncoming queues an outbox row to bridgev2 and deletes the row once bridgev2
// handled it. With portal_event_buffer 0 (what this bridge expects), the result is
// bridgev2's handling itself. With a buffer, bridgev2 only queued it in memory and the
// row is deleted anyway: a crash before the portal's loop handles it loses it, as
// with any bridgev2 event queued that way. A failed handling keeps the row for the
// next Connect, up to maxIncomingAttempts failures. received is when the stanza
// arrived, for the latency metric.
func (ic *InteropClient) bridgeIncoming(ctx context.Context, in *bridgedb.Incoming, received time.Time) {
	log := zerolog.Ctx(ctx).With().Str("stanza_id", in.StanzaID).Logger()
	m, err := fromIncoming(in)
	if err != nil {
		// It was written by toIncoming, so this is a corrupt row: replaying it
		// cannot help.
		log.Err(err).Msg("Dropping an unreadable message from the outbox")
	} else if res := ic.bridgeMessage(ctx, m); res.Success {
		var latency time.Duration
		if !res.Ignored && !received.IsZero() {
			latency = time.Since(received)
		}
		ic.Main.metrics.MessageIn(string(ic.Network), messageType(m.Message), latency)
	} else {
		if ctx.Err() != nil || ic.shuttingDown() {
			log.Warn().Err(res.Error).Msg("Incoming message not bridged before the shutdown; it stays in the outbox")
			return
		}
		attempts, err := ic.Main.DB.IncomingFailed(ctx, in.LoginID, in.Chat, in.Sender, in.StanzaID)
		if err != nil {
			log.Err(err).Msg("Failed to count a failed handling of an incoming message")
		}
		if attempts < maxIncomingAttempts {
			log.Err(res.Error).Int("attempts", attempts).
				Msg("bridgev2 failed to handle incoming message; it stays in the outbox for the next connection")
			return
		}
		log.Error().Err(res.Error).Int("attempts", attempts).Msg("Giving up on an incoming message bridgev2 keeps failing to handle")
	}
	if err := ic.Main.DB.DeleteIncoming(ctx, in.LoginID, in.Chat, in.Sender, in.StanzaID); err != nil {
		log.Err(err).Msg("Failed to delete a bridged message from the outbox")
	}
}

// maxIncomingAttempts bounds the handlings of one outbox row: a message bridgev2 can
// never handle would otherwise be replayed on every connection.
const maxIncomingAttempts = 5

// shuttingDown is true once the bridge is stopping, when bridgev2 refuses events for
// a reason that says nothing about the message.
func (ic *InteropClient) shuttingDown() bool {
	br := ic.Main.Bridge
	return br != nil && br.BackgroundCtx != nil && br.BackgroundCtx.Err() != nil
}

// toIncoming is the outbox row of a delivered message.
func (ic *InteropClient) toIncoming(m *interop.DecryptedMessage) (*bridgedb.Incoming, error) {
	in := &bridgedb.Incoming{
		LoginID:   string(ic.UserLogin.ID),
		Chat:      m.Info.Chat.String(),
		Sender:    m.Info.Sender.String(),
		StanzaID:  m.Info.ID,
		IsGroup:   m.Info.IsGroup,
		Timestamp: m.Info.Timestamp,
		Type:      m.Info.Type,
		MediaType: m.Info.MediaType,
		Edit:      m.Info.Edit,
		PushName:  m.Info.PushName,
	}
	if m.Message != nil {
		data, err := proto.Marshal(m.Message)
		if err != nil {
			return nil, fmt.Errorf("failed to serialize message: %w", err)
		}
		if data == nil {
			data = []byte{} // an empty message is still a decrypted one
		}
		in.Message = data
	}
	return in, nil
}

// fromIncoming is the delivered message of an outbox row; Message nil means it did
// not decrypt.
func fromIncoming(in *bridgedb.Incoming) (*interop.DecryptedMessage, error) {
	chat, err := jid.Parse(in.Chat)
	if err != nil {
		return nil, fmt.Errorf("failed to parse chat: %w", err)
	}
	sender, err := jid.Parse(in.Sender)
	if err != nil {
		return nil, fmt.Errorf("failed to parse sender: %w", err)
	}
	m := &interop.DecryptedMessage{Info: interop.MessageInfo{
		ID: in.StanzaID, Chat: chat, Sender: sender, IsGroup: in.IsGroup, Timestamp: in.Timestamp,
		Type: in.Type, MediaType: in.MediaType, Edit: in.Edit, PushName: in.PushName,
	}}
	if in.Message != nil {
		m.Message = &waE2E.Message{}
		if err := proto.Unmarshal(in.Message, m.Message); err != nil {
			return nil, fmt.Errorf("failed to parse message: %w", err)
		}
	} else {
		m.Undecryptable = &interop.UndecryptableMessage{}
	}
	return m, nil
}

// bridgeMessage queues a decrypted message as a remote event in the portal of its chat,
// creating the portal for a new contact.
func (ic *InteropClient) bridgeMessage(ctx context.Context, m *interop.DecryptedMessage) bridgev2.EventHandlingResult {
	log := zerolog.Ctx(ctx).With().Str("message_id", m.Info.ID).Stringer("sender", m.Info.Sender).Logger()
	if m.Info.IsGroup && ic.ownLogin(m.Info.Sender) != nil {
		// Another of this bridge's users sent it from Matrix, where it already is (an
		// interop account sends from nowhere else).
		return bridgev2.EventHandlingResultIgnored
	}
	if m.Message == nil {
		return ic.bridgeUndecryptable(log.WithContext(ctx), m)
	}
	if res, ok := ic.bridgeChange(ctx, m); ok {
		if res.Success {
			ic.removeNotice(log.WithContext(ctx), m)
		}
		return res
	}
	if t := messageType(m.Message); t == "location" || t == "other" {
		// msgconv puts a notice saying what arrived.
		log.Info().Str("type", m.Info.Type).Msg("Bridging a message this bridge cannot show as a notice")
	}
	chat, sender := m.Info.Chat.ToUser(), m.Info.Sender.ToUser()
	evtSender := ic.messageSender(ctx, m.Info)
	ts := m.Info.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	conv := ic.converter()
	info := msgconv.MetaInfo{Chat: chat, Sender: sender}
	msgID := ids.MakeMessageID(chat, sender, m.Info.ID)
	// An upsert, so that a message whose notice said it could not be decrypted
	// replaces that notice (undecryptable.go).
	evt := &simplevent.Message[*waE2E.Message]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessageUpsert,
			PortalKey:    ids.MakePortalKey(chat, ic.UserLogin.ID),
			CreatePortal: true,
			Sender:       evtSender,
			Timestamp:    ts,
		},
		Data: m.Message,
		ID:   msgID,
		ConvertMessageFunc: func(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, msg *waE2E.Message) (*bridgev2.ConvertedMessage, error) {
			conv := *conv
			// Attachments are fetched only now, inside the portal: the upload needs the
			// room (encrypted or not) and the sender's intent.
			conv.Media = ic.newMediaUploader(portal, intent, msgID, "")
			return conv.FromMeta(ctx, info, msg)
		},
	}
	evt.HandleExistingFunc = ic.replaceNotice(evt, info)
	return ic.queueRemoteEvent(evt)
}

// messageSender is who sent a message: in a 1:1 chat the peer (or this login), in a
// group the participant as groupSender names them.
func (ic *InteropClient) messageSender(ctx context.Context, info interop.MessageInfo) bridgev2.EventSender {
	sender := info.Sender.ToUser()
	if info.IsGroup {
		return ic.groupSender(sender)
	}
	return bridgev2.EventSender{IsFromMe: ic.IsThisUser(ctx, ids.MakeUserID(sender)), Sender: ids.MakeUserID(sender)}
}

// converter is msgconv with this login's mentions: ghosts and its own Matrix user.
func (ic *InteropClient) converter() *msgconv.Converter {
	r := mentionResolver{ic}
	return &msgconv.Converter{MessageID: ids.MakeMessageID, Mentions: r, Users: r}
}
