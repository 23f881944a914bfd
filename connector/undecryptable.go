package connector

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// A message that does not decrypt is never a silent gap. interop.Account sends the
// sender a retry receipt and delivers the message as Undecryptable; the connector
// puts a notice from the sender's ghost in the portal, under the message ID the real
// message will have (chat, sender, stanza id). When the sender's app answers the
// retry receipt and the message decrypts, it arrives as an upsert: bridgev2 finds the
// notice under its ID and the connector turns the notice into the message with an
// edit (as mautrix-whatsapp does). A second failure of the same message repeats the
// notice with the same ID, which bridgev2 drops as a duplicate.

// undecryptableNotice is the notice's text.
const undecryptableNotice = "This message could not be decrypted. Your contact's app was asked to send it again; " +
	"it will replace this notice when it arrives."

// bridgeUndecryptable queues the notice for a 1:1 message that did not decrypt. It
// creates the portal like the message itself would have: the user learns that a
// contact wrote, and the message fills the notice in later.
func (ic *InteropClient) bridgeUndecryptable(ctx context.Context, m *interop.DecryptedMessage) bridgev2.EventHandlingResult {
	chat, sender := m.Info.Chat.ToUser(), m.Info.Sender.ToUser()
	zerolog.Ctx(ctx).Warn().Str("type", m.Info.Type).Msg("Bridging a notice for an incoming message that could not be decrypted")
	ts := m.Info.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	return ic.queueRemoteEvent(&simplevent.PreConvertedMessage{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventMessage,
			PortalKey:    ids.MakePortalKey(chat, ic.UserLogin.ID),
			CreatePortal: true,
			Sender:       ic.messageSender(ctx, m.Info),
			Timestamp:    ts,
		},
		ID:   ids.MakeMessageID(chat, sender, m.Info.ID),
		Data: undecryptableConverted(),
	})
}

// undecryptableConverted is the notice as bridgev2 sends it.
func undecryptableConverted() *bridgev2.ConvertedMessage {
	return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{{
		Type:       event.EventMessage,
		Content:    &event.MessageEventContent{MsgType: event.MsgNotice, Body: undecryptableNotice},
		Extra:      map[string]any{"io.github.matrix-meta-interop.undecryptable": true},
		DBMetadata: &MessageMetadata{Undecryptable: true},
	}}}
}

// isUndecryptableNotice tells whether a stored message is the notice for a message
// that did not decrypt.
func isUndecryptableNotice(existing []*database.Message) bool {
	if len(existing) == 0 {
		return false
	}
	meta, ok := existing[0].Metadata.(*MessageMetadata)
	return ok && meta.Undecryptable
}

// replaceNotice is the HandleExisting of an incoming message: when bridgev2 already
// holds its ID, a notice is replaced by the message with an edit; anything else is a
// redelivery, dropped.
func (ic *InteropClient) replaceNotice(evt *simplevent.Message[*waE2E.Message], info msgconv.MetaInfo) func(context.Context, *bridgev2.Portal, bridgev2.MatrixAPI, []*database.Message, *waE2E.Message) (bridgev2.UpsertResult, error) {
	return func(ctx context.Context, _ *bridgev2.Portal, _ bridgev2.MatrixAPI, existing []*database.Message, msg *waE2E.Message) (bridgev2.UpsertResult, error) {
		if !isUndecryptableNotice(existing) {
			zerolog.Ctx(ctx).Debug().Msg("Ignoring a message that was bridged before")
			return bridgev2.UpsertResult{}, nil
		}
		zerolog.Ctx(ctx).Info().Msg("A message that could not be decrypted arrived; replacing its notice")
		conv := ic.converter()
		edit := &simplevent.Message[*waE2E.Message]{
			EventMeta:     evt.EventMeta,
			Data:          msg,
			ID:            evt.ID,
			TargetMessage: evt.ID,
			ConvertEditFunc: func(ctx context.Context, portal *bridgev2.Portal, intent bridgev2.MatrixAPI, existing []*database.Message, msg *waE2E.Message) (*bridgev2.ConvertedEdit, error) {
				// An attachment is fetched and uploaded as in a first delivery.
				conv := *conv
				conv.Media = ic.newMediaUploader(portal, intent, evt.ID, existingPartID(existing))
				converted, err := conv.FromMeta(ctx, info, msg)
				if err != nil {
					return nil, err
				}
				return noticeReplacement(converted, existing)
			},
		}
		edit.Type = bridgev2.RemoteEventEdit
		return bridgev2.UpsertResult{SubEvents: []bridgev2.RemoteEvent{edit}}, nil
	}
}

// noticeReplacement edits the notice into the converted message: its first part
// replaces the notice, and the stored row loses the undecryptable mark, so a
// redelivery is not taken for a notice again.
func noticeReplacement(converted *bridgev2.ConvertedMessage, existing []*database.Message) (*bridgev2.ConvertedEdit, error) {
	if len(converted.Parts) == 0 || len(existing) == 0 {
		return nil, fmt.Errorf("%w: nothing to replace the notice with", bridgev2.ErrIgnoringRemoteEvent)
	}
	part := *converted.Parts[0]
	// The message's own metadata (a direct media attachment's keys), without the mark.
	meta := &MessageMetadata{}
	if m, ok := part.DBMetadata.(*MessageMetadata); ok && m != nil {
		*meta = *m
		meta.Undecryptable = false
	}
	part.DBMetadata = meta
	edit := part.ToEditPart(existing[0])
	// Clients that know it show the message as it is, not as an edit.
	edit.TopLevelExtra = map[string]any{"com.beeper.dont_render_edited": true}
	return &bridgev2.ConvertedEdit{ModifiedParts: []*bridgev2.ConvertedEditPart{edit}}, nil
}

// removeNotice takes back the notice of a reaction, edit or revoke that did not
// decrypt at first: once it decrypted, it changed the message it is about, and its
// own ID names nothing but the notice.
func (ic *InteropClient) removeNotice(ctx context.Context, m *interop.DecryptedMessage) {
	if ic.Main.Bridge == nil || ic.Main.Bridge.DB == nil {
		return
	}
	chat, sender := m.Info.Chat.ToUser(), m.Info.Sender.ToUser()
	key := ids.MakePortalKey(chat, ic.UserLogin.ID)
	id := ids.MakeMessageID(chat, sender, m.Info.ID)
	existing, err := ic.Main.Bridge.DB.Message.GetAllPartsByID(ctx, key.Receiver, id)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to look for the notice of a change that did not decrypt at first")
		return
	} else if !isUndecryptableNotice(existing) {
		return
	}
	res := ic.queueRemoteEvent(&simplevent.MessageRemove{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventMessageRemove,
			PortalKey: key,
			Sender:    bridgev2.EventSender{Sender: ids.MakeUserID(sender)},
			Timestamp: time.Now(),
		},
		TargetMessage:   id,
		HidePlaceholder: true,
	})
	if !res.Success {
		zerolog.Ctx(ctx).Err(res.Error).Msg("Failed to remove the notice of a change that did not decrypt at first")
	}
}
