package connector

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/simplevent"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// bridgeChange queues a 1:1 reaction, edit or revoke as the remote event that changes
// an already bridged message. ok is false for messages that are none of these, which
// the caller bridges as new messages.
func (ic *InteropClient) bridgeChange(ctx context.Context, m *interop.DecryptedMessage) (res bridgev2.EventHandlingResult, ok bool) {
	r, pm := m.Message.GetReactionMessage(), m.Message.GetProtocolMessage()
	if r == nil && pm == nil {
		return res, false
	}
	log := zerolog.Ctx(ctx).With().Str("message_id", m.Info.ID).Logger()
	chat, sender := m.Info.Chat.ToUser(), m.Info.Sender.ToUser()
	info := msgconv.MetaInfo{Chat: chat, Sender: sender}
	conv := ic.converter()
	meta := simplevent.EventMeta{
		PortalKey: ids.MakePortalKey(chat, ic.UserLogin.ID),
		Sender:    ic.messageSender(ctx, m.Info),
		Timestamp: m.Info.Timestamp,
	}
	if meta.Timestamp.IsZero() {
		meta.Timestamp = time.Now()
	}
	if r != nil {
		reaction, err := conv.ReactionFromMeta(info, r)
		if err != nil {
			log.Warn().Err(err).Msg("Ignoring an invalid reaction")
			return bridgev2.EventHandlingResultIgnored, true
		}
		meta.Type = bridgev2.RemoteEventReaction
		if reaction.Remove {
			meta.Type = bridgev2.RemoteEventReactionRemove
		}
		if !reaction.Timestamp.IsZero() {
			meta.Timestamp = reaction.Timestamp
		}
		// No EmojiID: WhatsApp keeps one reaction per user and message, so bridgev2
		// replaces the sender's previous one.
		return ic.queueRemoteEvent(&simplevent.Reaction{EventMeta: meta, TargetMessage: reaction.Target, Emoji: reaction.Emoji}), true
	}
	change, err := conv.ProtocolFromMeta(info, pm)
	if err != nil {
		// Also other protocol messages (history sync, key shares), which carry no
		// change to a bridged message.
		log.Debug().Err(err).Msg("Ignoring a protocol message that is not an edit or revoke")
		return bridgev2.EventHandlingResultIgnored, true
	}
	switch change := change.(type) {
	case *msgconv.Edit:
		meta.Type = bridgev2.RemoteEventEdit
		if !change.Timestamp.IsZero() {
			meta.Timestamp = change.Timestamp
		}
		editedAt := meta.Timestamp
		return ic.queueRemoteEvent(&simplevent.Message[*waE2E.Message]{
			EventMeta:     meta,
			Data:          change.Content,
			ID:            ids.MakeMessageID(chat, sender, m.Info.ID),
			TargetMessage: change.Target,
			ConvertEditFunc: func(ctx context.Context, _ *bridgev2.Portal, _ bridgev2.MatrixAPI, existing []*database.Message, edited *waE2E.Message) (*bridgev2.ConvertedEdit, error) {
				if lateEdit(existing, editedAt) {
					// WhatsApp's own clients ignore it, so Matrix should not show
					// a text the Meta side never sees.
					return nil, bridgev2.ErrIgnoringRemoteEvent
				}
				return conv.ConvertEdit(ctx, edited, existing)
			},
		}), true
	case *msgconv.Revoke:
		meta.Type = bridgev2.RemoteEventMessageRemove
		return ic.queueRemoteEvent(&simplevent.MessageRemove{EventMeta: meta, TargetMessage: change.Target}), true
	default:
		log.Debug().Msg("Ignoring a protocol message that is not an edit or revoke")
		return bridgev2.EventHandlingResultIgnored, true
	}
}

// editClockSlack allows for the sender's clock being a little off from the one that
// stamped the target, so an edit at minute 14:59 is not dropped.
const editClockSlack = time.Minute

// lateEdit tells whether an incoming edit came after WhatsApp's 15-minute window.
func lateEdit(existing []*database.Message, editedAt time.Time) bool {
	if len(existing) == 0 || existing[0].Timestamp.IsZero() || editedAt.IsZero() {
		return false
	}
	return editedAt.Sub(existing[0].Timestamp) > editWindow+editClockSlack
}
