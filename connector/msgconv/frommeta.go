package msgconv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mau.fi/util/variationselector"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// MetaInfo is where an incoming message came from: the chat (the portal: the peer in a
// 1:1 chat, the group otherwise) and its sender.
type MetaInfo struct {
	Chat   jid.JID
	Sender jid.JID
}

// Reaction is an incoming reaction for the connector to turn into a remote event.
type Reaction struct {
	Target    networkid.MessageID
	Emoji     string // with variation selectors, as Matrix clients expect
	Remove    bool
	Timestamp time.Time // zero when the sender gave none
}

// Revoke is an incoming delete-for-everyone.
type Revoke struct {
	Target networkid.MessageID
}

// Edit is an incoming edit; ConvertEdit turns Content into Matrix edit parts once the
// connector has loaded the target's parts.
type Edit struct {
	Target    networkid.MessageID
	Content   *waE2E.Message
	Timestamp time.Time
}

// FromMeta converts an incoming text or attachment into one Matrix part. An attachment
// that cannot be bridged, and content of unknown kinds, become a notice saying so.
func (c *Converter) FromMeta(ctx context.Context, info MetaInfo, msg *waE2E.Message) (*bridgev2.ConvertedMessage, error) {
	part, ci, err := c.textPart(ctx, msg)
	if errors.Is(err, ErrUnsupported) {
		media, caption, mediaCI, ok := mediaOf(msg)
		if !ok {
			return &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{Placeholder(msg)}}, nil
		}
		part, ci = c.mediaPart(ctx, msg, media, caption, mediaCI), mediaCI
	} else if err != nil {
		return nil, err
	}
	cm := &bridgev2.ConvertedMessage{Parts: []*bridgev2.ConvertedMessagePart{part}}
	if ci.GetStanzaId() != "" && c.MessageID != nil {
		// Without a participant we cannot tell whose message was quoted; drop the reply
		// rather than point it at the wrong message.
		if sender, err := jid.Parse(ci.GetParticipant()); err == nil && !sender.IsEmpty() {
			cm.ReplyTo = &networkid.MessageOptionalPartID{
				MessageID: c.MessageID(info.Chat, sender.ToUser(), ci.GetStanzaId()),
			}
		}
	}
	return cm, nil
}

func (c *Converter) textPart(ctx context.Context, msg *waE2E.Message) (*bridgev2.ConvertedMessagePart, *waE2E.ContextInfo, error) {
	var text string
	var ci *waE2E.ContextInfo
	switch {
	case msg == nil:
		return nil, nil, fmt.Errorf("%w: no message", ErrInvalid)
	case msg.ExtendedTextMessage != nil:
		text = msg.ExtendedTextMessage.GetText()
		ci = msg.ExtendedTextMessage.GetContextInfo()
	case msg.Conversation != nil:
		text = msg.GetConversation()
	default:
		return nil, nil, fmt.Errorf("%w: not a text message", ErrUnsupported)
	}
	if len(text) > MaxTextBytes {
		return nil, nil, fmt.Errorf("%w (%d bytes)", ErrTextTooLong, len(text))
	}
	// Matrix events are JSON and must be valid UTF-8, and many clients choke on NUL; a
	// broken sender must not break them.
	text = strings.ReplaceAll(strings.ToValidUTF8(text, "\uFFFD"), "\x00", "")
	content := &event.MessageEventContent{MsgType: event.MsgText, Mentions: &event.Mentions{}}
	if rest, ok := strings.CutPrefix(text, emotePrefix); ok && strings.TrimSpace(rest) != "" {
		content.MsgType = event.MsgEmote
		text = rest
	}
	pills := c.pills(ctx, ci.GetMentionedJid())
	conv := markupToHTML{text: text, pills: pills}
	formatted := conv.render()
	content.Body = plainBody(text, pills)
	// Escaped literal markers need HTML too: sent back from a plain body they would format.
	if conv.formatted || stripJoiners(text, 0, len(text)) != text {
		content.Format = event.FormatHTML
		content.FormattedBody = formatted
	}
	for _, userID := range conv.mentioned {
		content.Mentions.Add(userID)
	}
	return &bridgev2.ConvertedMessagePart{Type: event.EventMessage, Content: content}, ci, nil
}

// pills resolves mentioned JIDs; unknown or malformed ones stay plain text.
func (c *Converter) pills(ctx context.Context, mentioned []string) map[string]pill {
	if len(mentioned) == 0 || c.Users == nil {
		return nil
	}
	pills := make(map[string]pill, len(mentioned))
	for _, s := range mentioned {
		j, err := jid.Parse(s)
		if err != nil || j.User == "" {
			continue
		}
		if userID, name, ok := c.Users.GhostOrUserForJID(ctx, j.ToUser()); ok && userID != "" {
			pills[j.User] = pill{userID: userID, displayname: name}
		}
	}
	return pills
}

// ConvertEdit turns an edit's new content into replacements for the target's parts.
func (c *Converter) ConvertEdit(ctx context.Context, edited *waE2E.Message, existing []*database.Message) (*bridgev2.ConvertedEdit, error) {
	if len(existing) == 0 {
		return nil, fmt.Errorf("%w: edit target has no parts", ErrInvalid)
	}
	part, _, err := c.textPart(ctx, edited)
	if err != nil {
		return nil, err
	}
	return &bridgev2.ConvertedEdit{ModifiedParts: []*bridgev2.ConvertedEditPart{part.ToEditPart(existing[0])}}, nil
}

// targetID names the message a key points at, seen from info's sender: fromMe means the
// sender wrote it, otherwise the participant did (groups) or, in a 1:1 chat, the other
// side of the sender's chat, which the key's remoteJid names.
func (c *Converter) targetID(info MetaInfo, key *waE2E.MessageKey) (networkid.MessageID, error) {
	if key.GetId() == "" {
		return "", fmt.Errorf("%w: message key has no id", ErrInvalid)
	}
	if c.MessageID == nil {
		return "", fmt.Errorf("%w: no message id function", ErrInvalid)
	}
	var sender jid.JID
	switch {
	case key.GetFromMe():
		sender = info.Sender
	case key.GetParticipant() != "":
		p, err := jid.Parse(key.GetParticipant())
		if err != nil {
			return "", fmt.Errorf("%w: bad participant in message key: %w", ErrInvalid, err)
		}
		sender = p
	default:
		r, err := jid.Parse(key.GetRemoteJid())
		if err != nil {
			return "", fmt.Errorf("%w: bad remote jid in message key: %w", ErrInvalid, err)
		}
		if r.IsGroup() {
			return "", fmt.Errorf("%w: group message key without participant", ErrInvalid)
		}
		sender = r
	}
	if sender.IsEmpty() {
		return "", fmt.Errorf("%w: unknown sender of the target message", ErrInvalid)
	}
	return c.MessageID(info.Chat, sender.ToUser(), key.GetId()), nil
}

// ReactionFromMeta reads an incoming reaction.
func (c *Converter) ReactionFromMeta(info MetaInfo, r *waE2E.ReactionMessage) (*Reaction, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: no reaction", ErrInvalid)
	}
	target, err := c.targetID(info, r.GetKey())
	if err != nil {
		return nil, err
	}
	out := &Reaction{Target: target, Remove: r.GetText() == ""}
	if !out.Remove {
		out.Emoji = variationselector.Add(r.GetText())
	}
	if ms := r.GetSenderTimestampMs(); ms > 0 {
		out.Timestamp = time.UnixMilli(ms)
	}
	return out, nil
}

// ProtocolFromMeta reads an incoming protocolMessage: it returns an *Edit or a *Revoke.
// Edits are only accepted for the sender's own messages.
func (c *Converter) ProtocolFromMeta(info MetaInfo, pm *waE2E.ProtocolMessage) (any, error) {
	if pm == nil || pm.Type == nil {
		return nil, fmt.Errorf("%w: protocol message without type", ErrInvalid)
	}
	target, err := c.targetID(info, pm.GetKey())
	if err != nil {
		return nil, err
	}
	switch pm.GetType() {
	case waE2E.ProtocolMessage_REVOKE:
		return &Revoke{Target: target}, nil
	case waE2E.ProtocolMessage_MESSAGE_EDIT:
		if !pm.GetKey().GetFromMe() {
			return nil, fmt.Errorf("%w: edit of someone else's message", ErrInvalid)
		}
		if pm.EditedMessage == nil {
			return nil, fmt.Errorf("%w: edit without new content", ErrInvalid)
		}
		e := &Edit{Target: target, Content: pm.EditedMessage}
		if ms := pm.GetTimestampMs(); ms > 0 {
			e.Timestamp = time.UnixMilli(ms)
		}
		return e, nil
	}
	return nil, fmt.Errorf("%w: protocol message type %d", ErrUnsupported, pm.GetType())
}

// TextOnly renders any message as one line of plain text, for quotedMessage copies and
// notices.
func TextOnly(msg *waE2E.Message) string {
	switch {
	case msg == nil:
		return ""
	case msg.Conversation != nil:
		return msg.GetConversation()
	case msg.ExtendedTextMessage != nil:
		return msg.ExtendedTextMessage.GetText()
	case msg.ImageMessage != nil:
		return withCaption("Image", msg.ImageMessage.GetCaption())
	case msg.VideoMessage != nil:
		return withCaption("Video", msg.VideoMessage.GetCaption())
	case msg.AudioMessage != nil:
		if msg.AudioMessage.GetPtt() {
			return "Voice message"
		}
		return "Audio"
	case msg.DocumentMessage != nil:
		name := msg.DocumentMessage.GetFileName()
		if name == "" {
			name = msg.DocumentMessage.GetTitle()
		}
		return withCaption(withCaption("Document", name), msg.DocumentMessage.GetCaption())
	case msg.LocationMessage != nil:
		return withCaption("Location", msg.LocationMessage.GetName())
	case msg.ReactionMessage != nil:
		return msg.ReactionMessage.GetText()
	case msg.ProtocolMessage != nil:
		if msg.ProtocolMessage.GetType() == waE2E.ProtocolMessage_MESSAGE_EDIT {
			return TextOnly(msg.ProtocolMessage.GetEditedMessage())
		}
		return "Message deleted"
	}
	return ""
}

// Placeholder is the notice that stands in for content the bridge cannot show yet
// (media, locations, unknown types), so that the Matrix user knows something arrived
// rather than seeing a gap.
func Placeholder(msg *waE2E.Message) *bridgev2.ConvertedMessagePart {
	what := TextOnly(msg)
	if what == "" {
		what = "A message of a kind this bridge does not know"
	}
	return &bridgev2.ConvertedMessagePart{
		Type: event.EventMessage,
		Content: &event.MessageEventContent{
			MsgType:  event.MsgNotice,
			Body:     what + " (not shown: this bridge cannot bridge it yet)",
			Mentions: &event.Mentions{},
		},
	}
}

func withCaption(kind, caption string) string {
	if caption == "" {
		return kind
	}
	return kind + ": " + caption
}
