package connector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// ErrNotConnected is wrapped when a message is sent while the login has no run loop.
var ErrNotConnected = errors.New("this login is not connected to Meta's gateway")

// sendTimeout bounds one send with its retries (429 and 5xx are retried until the
// ctx ends), so a Matrix sender learns of a failure instead of waiting forever.
const sendTimeout = 2 * time.Minute

// HandleMatrixMessage sends a Matrix text, notice, emote or file (media_out.go) to the
// 1:1 peer of the portal. Refusals come back as a notice in the room with a message
// per code.
func (ic *InteropClient) HandleMatrixMessage(ctx context.Context, msg *bridgev2.MatrixMessage) (*bridgev2.MatrixMessageResponse, error) {
	start := time.Now()
	// Sent or refused for good (the sender sees the status): either way it must not be
	// replayed after a restart. A crash before this point leaves it to the replay.
	if msg != nil {
		defer ic.Main.markHandled(ctx, msg.Event)
	}
	if msg == nil || msg.Content == nil || msg.Portal == nil {
		return nil, bridgev2.WrapErrorInStatus(fmt.Errorf("sending: %w", ErrNotImplemented)).
			WithIsCertain(true).WithSendNotice(true).WithErrorReason(event.MessageStatusUnsupported).
			WithMessage("This kind of message cannot be bridged yet")
	}
	isMedia := msgconv.IsMedia(msg.Content.MsgType)
	switch msg.Content.MsgType {
	case event.MsgText, event.MsgNotice, event.MsgEmote:
	default:
		if isMedia {
			break
		}
		return nil, bridgev2.WrapErrorInStatus(fmt.Errorf("sending %s: %w", msg.Content.MsgType, ErrNotImplemented)).
			WithIsCertain(true).WithSendNotice(true).WithErrorReason(event.MessageStatusUnsupported).
			WithMessage("Only text, images, videos, audio, voice messages and files can be sent to WhatsApp and Messenger by this bridge version")
	}
	peer, err := ids.ParsePortalID(msg.Portal.ID)
	if err != nil {
		return nil, err
	}
	acc := ic.account()
	if acc == nil || !ic.IsLoggedIn() {
		return nil, bridgev2.WrapErrorInStatus(ErrNotConnected).WithIsCertain(true).WithSendNotice(true).
			WithMessage("This login is not connected to Meta's gateway; sign in again")
	}
	// The id is chosen first: hosted media is filed under the message it belongs to.
	stanzaID := interop.NewID()
	var content *waE2E.Message
	var media *mediaSender
	if isMedia {
		content, media, err = ic.mediaMessage(ctx, msg, stanzaID)
		if err != nil {
			return nil, err
		}
	} else {
		content, err = ic.converter().ToMeta(ctx, msg.Content, ic.replyTarget(ctx, msg.Portal, msg.ReplyTo))
		if err != nil {
			status := bridgev2.WrapErrorInStatus(err).WithIsCertain(true).WithSendNotice(true)
			if errors.Is(err, msgconv.ErrTextTooLong) {
				return nil, status.WithErrorReason(event.MessageStatusUnsupported).WithMessage("The message is longer than WhatsApp allows")
			}
			return nil, status.WithErrorReason(event.MessageStatusUnsupported)
		}
	}
	res, err := ic.sendToMeta(ctx, acc, peer, stanzaID, content, start)
	if err != nil {
		if media != nil && refusedForSure(err) {
			media.forget(ctx, stanzaID)
		}
		return nil, ic.sendError(peer.String(), err)
	}
	ts := res.Timestamp
	if ts.IsZero() {
		ts = time.Now()
	}
	return &bridgev2.MatrixMessageResponse{DB: &database.Message{
		ID:        ids.MakeMessageID(peer, ic.Account, res.ID),
		SenderID:  ids.MakeUserID(ic.Account),
		Timestamp: ts,
	}}, nil
}

// refusedForSure tells a send the gateway refused (or that never left) from one that
// may have arrived despite the error (a timeout): the file of the latter stays hosted,
// since the peer may be fetching it, until the retention sweep.
func refusedForSure(err error) bool {
	var ce *errcode.Error
	return errors.As(err, &ce) || errors.Is(err, interop.ErrNoDevices)
}

// sendError explains a refused send to the Matrix user.
func (ic *InteropClient) sendError(peer string, err error) error {
	if ms, ok := errors.AsType[bridgev2.MessageStatus](err); ok {
		// Already worded for the Matrix user (requireGroupMember).
		return ms
	}
	status := bridgev2.WrapErrorInStatus(fmt.Errorf("failed to send: %w", err)).WithSendNotice(true)
	network := networkDisplayName(ic.Main, ic.Network)
	if errors.Is(err, interop.ErrNoDevices) {
		// The gateway lists no devices for users who did not opt in to this integrator.
		return status.WithIsCertain(true).WithStatus(event.MessageStatusFail).WithErrorReason(event.MessageStatusNoPermission).
			WithMessage(fmt.Sprintf("The recipient cannot be reached: they have not turned on third-party chats for this service on %s", network))
	}
	var ce *errcode.Error
	if !errors.As(err, &ce) {
		return status.WithMessage("The message could not be delivered to Meta's gateway; try again later")
	}
	status = status.WithIsCertain(true)
	// These refusals come back the same however often the message is sent again.
	if errors.Is(err, errcode.ErrForbidden) || errors.Is(err, errcode.ErrNotAcceptable) ||
		errors.Is(err, errcode.ErrTooLarge) || errors.Is(err, errcode.ErrNotFound) {
		status = status.WithStatus(event.MessageStatusFail)
	}
	switch {
	case errors.Is(err, errcode.ErrForbidden) && ce.Reason == errcode.ReasonRestricted:
		return status.WithErrorReason(event.MessageStatusNoPermission).
			WithMessage("Your account is restricted from sending after spam reports")
	case errors.Is(err, errcode.ErrForbidden):
		return status.WithErrorReason(event.MessageStatusNoPermission).
			WithMessage(fmt.Sprintf("The recipient cannot be reached: they have not turned on third-party chats for this service on %s, or blocked it", network))
	case errors.Is(err, errcode.ErrNotAcceptable):
		return status.WithErrorReason(event.MessageStatusUnsupported).
			WithMessage(fmt.Sprintf("%s does not accept this kind of message over third-party chats", network))
	case errors.Is(err, errcode.ErrTooLarge):
		return status.WithErrorReason(event.MessageStatusUnsupported).
			WithMessage("The message is too large for Meta's gateway")
	case errors.Is(err, errcode.ErrNotFound):
		return status.WithErrorReason(event.MessageStatusGenericError).
			WithMessage(fmt.Sprintf("%s has no user %s", network, peer))
	default:
		return status.WithMessage(fmt.Sprintf("Meta's gateway refused the message (%d)", ce.Code))
	}
}
