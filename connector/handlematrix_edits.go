package connector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/jsontime"
	"go.mau.fi/util/ptr"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

var (
	_ bridgev2.EditHandlingNetworkAPI      = (*InteropClient)(nil)
	_ bridgev2.RedactionHandlingNetworkAPI = (*InteropClient)(nil)
	_ bridgev2.ReactionHandlingNetworkAPI  = (*InteropClient)(nil)
)

// The windows of PROTOCOL.md section 4: WhatsApp drops later edits and revokes, so
// the bridge refuses them up front instead of sending something the peer ignores.
const (
	editWindow   = 15 * time.Minute
	revokeWindow = 48 * time.Hour
)

// errTooOld is wrapped when an edit or deletion comes after its window.
var errTooOld = errors.New("the message is too old")

// errNotOwn is wrapped when an edit or deletion targets someone else's message.
var errNotOwn = errors.New("only your own messages can be changed")

// sendPeer is the 1:1 peer and connected account a send in portal goes through, or an
// error status for the sender.
func (ic *InteropClient) sendPeer(portal *bridgev2.Portal) (jid.JID, *interop.Account, error) {
	if portal == nil {
		return jid.JID{}, nil, fmt.Errorf("no portal: %w", ErrNotImplemented)
	}
	peer, err := ids.ParsePortalID(portal.ID)
	if err != nil {
		return jid.JID{}, nil, err
	}
	acc := ic.account()
	if acc == nil || !ic.IsLoggedIn() {
		return jid.JID{}, nil, bridgev2.WrapErrorInStatus(ErrNotConnected).WithIsCertain(true).WithSendNotice(true).
			WithMessage("This login is not connected to Meta's gateway; sign in again")
	}
	return peer, acc, nil
}

// targetKey is the WhatsApp key of a bridged message, as this login names it.
func (ic *InteropClient) targetKey(msg *database.Message) (msgconv.MessageKey, error) {
	if msg == nil {
		return msgconv.MessageKey{}, fmt.Errorf("no target message: %w", msgconv.ErrInvalid)
	}
	key, err := ids.ParseMessageID(msg.ID)
	if err != nil {
		return msgconv.MessageKey{}, fmt.Errorf("failed to parse target message id: %w", err)
	}
	return msgconv.MessageKey{RemoteJID: key.Chat, FromMe: key.Sender == ic.Account, ID: key.StanzaID}, nil
}

// sendProtocol sends an edit, revoke or reaction to peer; SendMessage sets the
// stanza's type and edit attribute from the message.
func (ic *InteropClient) sendProtocol(ctx context.Context, acc *interop.Account, peer jid.JID, msg *waE2E.Message) (interop.SendResult, error) {
	res, err := ic.sendToMeta(ctx, acc, peer, interop.NewID(), msg, time.Now())
	if err != nil {
		return res, ic.sendError(peer.String(), err)
	}
	return res, nil
}

// refuse is a certain failure shown to the sender as a notice.
func refuse(err error, reason event.MessageStatusReason, text string) error {
	return bridgev2.WrapErrorInStatus(err).WithIsCertain(true).WithSendNotice(true).
		WithErrorReason(reason).WithMessage(text)
}

// ownRecentTarget checks that target is this login's own message and within window.
// done is the past participle the notices use ("edited", "deleted for everyone").
func (ic *InteropClient) ownRecentTarget(target *database.Message, window time.Duration, done string) (msgconv.MessageKey, error) {
	key, err := ic.targetKey(target)
	if err != nil {
		return key, refuse(err, event.MessageStatusGenericError, "The message cannot be found on WhatsApp or Messenger")
	}
	if !key.FromMe {
		return key, refuse(fmt.Errorf("%s: %w", done, errNotOwn), event.MessageStatusNoPermission,
			fmt.Sprintf("Only your own messages can be %s on WhatsApp and Messenger", done))
	}
	if !target.Timestamp.IsZero() && time.Since(target.Timestamp) > window {
		return key, refuse(fmt.Errorf("%s: %w", done, errTooOld), event.MessageStatusUnsupported,
			fmt.Sprintf("Messages can only be %s within %s of sending them on WhatsApp and Messenger", done, formatWindow(window)))
	}
	return key, nil
}

func formatWindow(d time.Duration) string {
	if d >= time.Hour {
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d minutes", int(d.Minutes()))
}

// HandleMatrixEdit sends a Matrix edit of this login's own message as MESSAGE_EDIT,
// refusing edits after WhatsApp's 15-minute window. bridgev2 updates the target row.
func (ic *InteropClient) HandleMatrixEdit(ctx context.Context, msg *bridgev2.MatrixEdit) error {
	if msg == nil {
		return fmt.Errorf("no edit: %w", msgconv.ErrInvalid)
	}
	defer ic.Main.markHandled(ctx, msg.Event)
	key, err := ic.ownRecentTarget(msg.EditTarget, editWindow, "edited")
	if err != nil {
		return err
	}
	peer, acc, err := ic.sendPeer(msg.Portal)
	if err != nil {
		return err
	}
	edit, err := ic.converter().EditToMeta(ctx, msg.Content, key, time.Now())
	if err != nil {
		if errors.Is(err, msgconv.ErrTextTooLong) {
			return refuse(err, event.MessageStatusUnsupported, "The message is longer than WhatsApp allows")
		}
		return refuse(err, event.MessageStatusUnsupported, "This edit cannot be bridged")
	}
	_, err = ic.sendProtocol(ctx, acc, peer, edit)
	return err
}

// HandleMatrixMessageRemove deletes this login's own message for everyone (REVOKE),
// within 48 hours, and the file it hosted for a media message.
func (ic *InteropClient) HandleMatrixMessageRemove(ctx context.Context, msg *bridgev2.MatrixMessageRemove) error {
	if msg == nil {
		return fmt.Errorf("no redaction: %w", msgconv.ErrInvalid)
	}
	defer ic.Main.markHandled(ctx, msg.Event)
	key, err := ic.ownRecentTarget(msg.TargetMessage, revokeWindow, "deleted for everyone")
	if err != nil {
		return err
	}
	peer, acc, err := ic.sendPeer(msg.Portal)
	if err != nil {
		return err
	}
	revoke, err := msgconv.RevokeMessage(key)
	if err != nil {
		return refuse(err, event.MessageStatusGenericError, "This deletion cannot be bridged")
	}
	if _, err = ic.sendProtocol(ctx, acc, peer, revoke); err != nil {
		return err
	}
	// Meta's proxy must not serve a revoked message's file any more.
	ic.forgetMedia(ctx, key.ID)
	return nil
}

// PreHandleMatrixReaction names the reaction by sender only: WhatsApp keeps one
// reaction per user and message, so bridgev2 replaces the previous one.
func (ic *InteropClient) PreHandleMatrixReaction(_ context.Context, msg *bridgev2.MatrixReaction) (bridgev2.MatrixReactionPreResponse, error) {
	if msg == nil || msg.Content == nil {
		return bridgev2.MatrixReactionPreResponse{}, fmt.Errorf("no reaction: %w", msgconv.ErrInvalid)
	}
	return bridgev2.MatrixReactionPreResponse{
		SenderID:     ids.MakeUserID(ic.Account),
		Emoji:        msg.Content.RelatesTo.Key,
		MaxReactions: 1,
	}, nil
}

// HandleMatrixReaction sets this login's reaction on a message.
func (ic *InteropClient) HandleMatrixReaction(ctx context.Context, msg *bridgev2.MatrixReaction) (*database.Reaction, error) {
	if msg == nil || msg.Content == nil {
		return nil, fmt.Errorf("no reaction: %w", msgconv.ErrInvalid)
	}
	defer ic.Main.markHandled(ctx, msg.Event)
	emoji := msg.Content.RelatesTo.Key
	if msg.PreHandleResp != nil {
		emoji = msg.PreHandleResp.Emoji
	}
	if err := ic.sendReaction(ctx, msg.Portal, msg.TargetMessage, emoji); err != nil {
		return nil, err
	}
	return &database.Reaction{SenderID: ids.MakeUserID(ic.Account), Emoji: emoji, Timestamp: time.Now()}, nil
}

// HandleMatrixReactionRemove takes this login's reaction back (an empty reaction).
func (ic *InteropClient) HandleMatrixReactionRemove(ctx context.Context, msg *bridgev2.MatrixReactionRemove) error {
	if msg == nil || msg.TargetReaction == nil {
		return fmt.Errorf("no reaction to remove: %w", msgconv.ErrInvalid)
	}
	defer ic.Main.markHandled(ctx, msg.Event)
	target := &database.Message{ID: msg.TargetReaction.MessageID}
	return ic.sendReaction(ctx, msg.Portal, target, "")
}

func (ic *InteropClient) sendReaction(ctx context.Context, portal *bridgev2.Portal, target *database.Message, emoji string) error {
	key, err := ic.targetKey(target)
	if err != nil {
		return refuse(err, event.MessageStatusGenericError, "The reacted-to message cannot be found on WhatsApp")
	}
	peer, acc, err := ic.sendPeer(portal)
	if err != nil {
		return err
	}
	reaction, err := msgconv.ReactionMessage(key, emoji, time.Now())
	if err != nil {
		return refuse(err, event.MessageStatusUnsupported, "This reaction cannot be bridged")
	}
	_, err = ic.sendProtocol(ctx, acc, peer, reaction)
	return err
}

// replyTarget is what a Matrix reply quotes, nil when it replies to nothing bridged.
func (ic *InteropClient) replyTarget(ctx context.Context, portal *bridgev2.Portal, replyTo *database.Message) *msgconv.ReplyTarget {
	if replyTo == nil {
		return nil
	}
	key, err := ids.ParseMessageID(replyTo.ID)
	if err != nil {
		return nil
	}
	var bot bridgev2.MatrixAPI
	if portal != nil && portal.Bridge != nil && portal.Bridge.Bot != nil {
		bot = portal.Bridge.Bot
	}
	target := &msgconv.ReplyTarget{StanzaID: key.StanzaID, Sender: key.Sender}
	if portal != nil {
		target.Text = quotedText(ctx, bot, portal.MXID, replyTo.MXID)
	}
	return target
}

// quoteTimeout bounds fetching the replied-to event: the quote is a courtesy copy
// and must not hold up the reply.
const quoteTimeout = 5 * time.Second

// quotedText is the text of the replied-to Matrix event for quotedMessage, which
// WhatsApp shows above the reply. The message table keeps no text, so it is fetched
// from the homeserver; on any failure the quote stays empty and the reply still
// names its target by stanza id.
func quotedText(ctx context.Context, bot bridgev2.MatrixAPI, room id.RoomID, evtID id.EventID) string {
	if bot == nil || room == "" || evtID == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, quoteTimeout)
	defer cancel()
	evt, err := bot.GetEvent(ctx, room, evtID)
	if err != nil || evt == nil {
		zerolog.Ctx(ctx).Debug().Err(err).Stringer("event_id", evtID).Msg("Failed to fetch the replied-to event for the quote")
		return ""
	}
	if evt.Content.Parsed == nil {
		_ = evt.Content.ParseRaw(evt.Type)
	}
	content, ok := evt.Content.Parsed.(*event.MessageEventContent)
	if !ok {
		return ""
	}
	if content.NewContent != nil {
		content = content.NewContent
	}
	content.RemoveReplyFallback()
	return content.Body
}

// editFeatures declares what this file bridges: bridgev2 drops Matrix edits and
// replies in rooms whose features lack them. EditMaxAge is left unset on purpose:
// bridgev2 would then refuse late edits itself, without the notice that tells the
// sender about WhatsApp's 15-minute window (HandleMatrixEdit sends one).
func editFeatures(f *event.RoomFeatures) {
	f.Reply = event.CapLevelFullySupported
	f.Edit = event.CapLevelFullySupported
	f.Delete = event.CapLevelFullySupported
	f.DeleteMaxAge = ptr.Ptr(jsontime.S(revokeWindow))
	f.Reaction = event.CapLevelFullySupported
	f.ReactionCount = 1
}
