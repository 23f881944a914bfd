package connector

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/simplevent"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

var (
	_ bridgev2.TypingHandlingNetworkAPI = (*InteropClient)(nil)
)

// typingTimeout is how long Matrix shows a Meta user typing: chatstates are never
// resent while typing goes on, and a lost <paused/> must not leave them typing forever.
const typingTimeout = 15 * time.Second

// handleChatState shows a Meta user's typing in the portal. Chatstates are
// never acked (PROTOCOL.md 3.6), and one that fails to bridge is simply lost.
func (ic *InteropClient) handleChatState(ctx context.Context, node stanza.Node) {
	evt, err := ic.typingEvent(node)
	if evt == nil {
		ic.queueBestEffort(ctx, zerolog.DebugLevel, "chatstate", nil, err)
		return
	}
	ic.queueBestEffort(ctx, zerolog.DebugLevel, "chatstate", evt, err)
}

// typingEvent is the remote event of a chatstate: in a group, the typing member's.
func (ic *InteropClient) typingEvent(node stanza.Node) (*simplevent.Typing, error) {
	cs, err := interop.ParseChatState(node)
	if err != nil {
		return nil, fmt.Errorf("failed to parse chatstate: %w", err)
	}
	chat := cs.From.ToUser()
	sender := bridgev2.EventSender{Sender: ids.MakeUserID(chat)}
	if chat.IsGroup() {
		// The participant is the member typing.
		if cs.Participant.IsEmpty() {
			return nil, fmt.Errorf("group chatstate without participant")
		}
		if cs.Participant.ToUser() == ic.Account.ToUser() {
			return nil, nil
		}
		sender = ic.groupSender(cs.Participant)
	} else if !cs.Participant.IsEmpty() {
		return nil, nil
	}
	evt := &simplevent.Typing{
		EventMeta: simplevent.EventMeta{
			Type:      bridgev2.RemoteEventTyping,
			PortalKey: ids.MakePortalKey(chat, ic.UserLogin.ID),
			Sender:    sender,
			Timestamp: time.Now(),
		},
	}
	switch cs.State {
	case interop.ChatComposing:
		evt.Timeout, evt.Type = typingTimeout, bridgev2.TypingTypeText
	case interop.ChatRecording:
		evt.Timeout, evt.Type = typingTimeout, bridgev2.TypingTypeRecordingMedia
	case interop.ChatPaused:
		// Timeout 0 stops the typing.
	}
	return evt, nil
}

// HandleMatrixTyping tells the Meta user (or the group) the Matrix user is typing (or
// recording a voice message) or stopped.
func (ic *InteropClient) HandleMatrixTyping(ctx context.Context, msg *bridgev2.MatrixTyping) error {
	acc := ic.account()
	if acc == nil {
		return fmt.Errorf("not connected")
	}
	chat, err := ids.ParsePortalID(msg.Portal.ID)
	if err != nil {
		return fmt.Errorf("failed to parse portal: %w", err)
	}
	state := interop.ChatPaused
	if msg.IsTyping {
		state = interop.ChatComposing
		if msg.Type == bridgev2.TypingTypeRecordingMedia {
			state = interop.ChatRecording
		}
	}
	if err := acc.Client().SendChatState(ctx, chat.ToUser(), state); err != nil {
		return fmt.Errorf("failed to send chatstate: %w", err)
	}
	return nil
}
