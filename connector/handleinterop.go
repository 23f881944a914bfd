package connector

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/simplevent"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// handleMessage decrypts one <message> and bridges its text.
//
// Ordering of the ack: Account.HandleMessage acks after deliver returned and the
// ratchet step committed. deliver runs inside the Signal store's transaction, which
// on SQLite holds the database's write lock (_txlock=immediate), so bridgev2 cannot
// handle the event from inside deliver: its own writes would wait for that lock.
// deliver therefore only keeps the decrypted message, and the event is queued right
// after the commit and ack. A crash between the two loses the message.
// TODO: close that gap with an outbox table in database/ written with deliver's ctx
// (so it commits with the ratchet step) and replayed on Connect.
func (ic *InteropClient) handleMessage(ctx context.Context, node stanza.Node) {
	log := zerolog.Ctx(ctx)
	acc := ic.account()
	if acc == nil {
		return
	}
	var got *interop.DecryptedMessage
	outcome, err := acc.HandleMessage(ctx, node, func(_ context.Context, m *interop.DecryptedMessage) error {
		kept := *m
		if m.Message != nil {
			kept.Message = proto.Clone(m.Message).(*waE2E.Message)
		}
		got = &kept
		return nil
	})
	if err != nil {
		log.Err(err).Msg("Failed to handle incoming message")
		return
	}
	if got == nil {
		log.Debug().Str("outcome", string(outcome)).Msg("Incoming message delivered nothing")
		return
	}
	res := ic.bridgeMessage(ctx, got)
	if !res.Success {
		log.Err(res.Error).Str("message_id", got.Info.ID).Msg("bridgev2 failed to handle incoming message")
	}
}

// bridgeMessage queues a decrypted message as a remote event in the portal of its chat,
// creating the portal for a new contact.
func (ic *InteropClient) bridgeMessage(ctx context.Context, m *interop.DecryptedMessage) bridgev2.EventHandlingResult {
	log := zerolog.Ctx(ctx).With().Str("message_id", m.Info.ID).Stringer("sender", m.Info.Sender).Logger()
	if m.Info.IsGroup {
		// TODO groups: portal per group JID, members from w:g2.
		log.Info().Msg("Ignoring a group message: groups are not bridged yet")
		return bridgev2.EventHandlingResultIgnored
	}
	if m.Message == nil {
		// TODO show undecryptable messages as a notice in the portal.
		log.Warn().Msg("Incoming message could not be decrypted")
		return bridgev2.EventHandlingResultIgnored
	}
	if m.Message.GetConversation() == "" && m.Message.GetExtendedTextMessage() == nil {
		// TODO media, reactions, edits and revokes (msgconv has most of them).
		log.Info().Str("type", m.Info.Type).Msg("Ignoring non-text message: not bridged yet")
		return bridgev2.EventHandlingResultIgnored
	}
	chat, sender := m.Info.Chat.ToUser(), m.Info.Sender.ToUser()
	ts := m.Info.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	conv := ic.converter()
	info := msgconv.MetaInfo{Chat: chat, Sender: sender}
	return ic.queueRemoteEvent(&simplevent.Message[*waE2E.Message]{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    ids.MakePortalKey(chat, ic.UserLogin.ID),
			CreatePortal: true,
			Sender: bridgev2.EventSender{
				IsFromMe: ic.IsThisUser(ctx, ids.MakeUserID(sender)),
				Sender:   ids.MakeUserID(sender),
			},
			Timestamp: ts,
		},
		Data: m.Message,
		ID:   ids.MakeMessageID(chat, sender, m.Info.ID),
		ConvertMessageFunc: func(ctx context.Context, _ *bridgev2.Portal, _ bridgev2.MatrixAPI, msg *waE2E.Message) (*bridgev2.ConvertedMessage, error) {
			return conv.FromMeta(ctx, info, msg)
		},
	})
}

// converter is msgconv without mention or reply resolution yet.
// TODO resolve mentions and replies through the bridge's ghosts and message table.
func (ic *InteropClient) converter() *msgconv.Converter {
	return &msgconv.Converter{MessageID: ids.MakeMessageID}
}
