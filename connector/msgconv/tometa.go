package msgconv

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/variationselector"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// emotePrefix marks an emote in WhatsApp text, as mautrix bridges do.
const emotePrefix = "/me "

// ReplyTarget is what a reply quotes: the replied-to message's stanza id, its sender and a
// text-only copy of it (see TextOnly).
type ReplyTarget struct {
	StanzaID string
	Sender   jid.JID
	Text     string
}

// MessageKey names a message to edit, revoke or react to, as WhatsApp's MessageKey does:
// the chat as the sender of the new message sees it, whether that sender also sent the
// target, the target's stanza id and, in groups, the target's sender.
type MessageKey struct {
	RemoteJID   jid.JID
	FromMe      bool
	ID          string
	Participant jid.JID
}

func (k MessageKey) proto() *waE2E.MessageKey {
	key := &waE2E.MessageKey{
		RemoteJid: proto.String(k.RemoteJID.String()),
		FromMe:    proto.Bool(k.FromMe),
		Id:        proto.String(k.ID),
	}
	if !k.Participant.IsEmpty() {
		key.Participant = proto.String(k.Participant.String())
	}
	return key
}

func (k MessageKey) check() error {
	if k.RemoteJID.IsEmpty() || k.ID == "" {
		return fmt.Errorf("%w: message key needs a chat and an id", ErrInvalid)
	}
	return nil
}

// ToMeta converts a Matrix text, notice or emote into a waE2E message. reply may be nil.
// Reply fallbacks are stripped. A message that needs no context is a plain conversation.
func (c *Converter) ToMeta(ctx context.Context, content *event.MessageEventContent, reply *ReplyTarget) (*waE2E.Message, error) {
	if content == nil {
		return nil, fmt.Errorf("%w: no content", ErrInvalid)
	}
	text, mentions, err := c.matrixText(ctx, content, reply != nil)
	if err != nil {
		return nil, err
	}
	ci, err := replyContext(reply)
	if err != nil {
		return nil, err
	}
	ci = withMentions(ci, mentions)
	if ci == nil {
		return &waE2E.Message{Conversation: proto.String(text)}, nil
	}
	return &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
		Text:        proto.String(text),
		ContextInfo: ci,
	}}, nil
}

// replyContext is the context of a message quoting reply, nil for no reply.
func replyContext(reply *ReplyTarget) (*waE2E.ContextInfo, error) {
	if reply == nil {
		return nil, nil
	}
	if reply.StanzaID == "" || reply.Sender.IsEmpty() {
		return nil, fmt.Errorf("%w: reply target needs a stanza id and a sender", ErrInvalid)
	}
	return &waE2E.ContextInfo{
		StanzaId:      proto.String(reply.StanzaID),
		Participant:   proto.String(reply.Sender.ToUser().String()),
		QuotedMessage: &waE2E.Message{Conversation: proto.String(reply.Text)},
	}, nil
}

// withMentions adds mentions to ci, making one when there are mentions and no ci.
func withMentions(ci *waE2E.ContextInfo, mentions []jid.JID) *waE2E.ContextInfo {
	if len(mentions) == 0 {
		return ci
	}
	if ci == nil {
		ci = &waE2E.ContextInfo{}
	}
	for _, j := range mentions {
		ci.MentionedJid = append(ci.MentionedJid, j.String())
	}
	return ci
}

// matrixText renders the content's text as WhatsApp markup and lists who it mentions.
func (c *Converter) matrixText(ctx context.Context, content *event.MessageEventContent, isReply bool) (string, []jid.JID, error) {
	switch content.MsgType {
	case event.MsgText, event.MsgNotice, event.MsgEmote:
	default:
		return "", nil, fmt.Errorf("%w: message type %q", ErrUnsupported, content.MsgType)
	}
	conv := htmlToMarkup{ctx: ctx, resolver: c.Mentions}
	var text string
	var err error
	if content.Format == event.FormatHTML && content.FormattedBody != "" {
		text, err = conv.convert(content.FormattedBody)
		if err != nil {
			// The plain body is the fallback every Matrix client must send anyway.
			zerolog.Ctx(ctx).Debug().Err(err).Msg("Sending the plain body of unparseable HTML")
			text = ""
		}
	}
	if text == "" {
		text = content.Body
		if isReply || content.RelatesTo.GetReplyTo() != "" {
			text = event.TrimReplyFallbackText(text)
		}
	}
	if content.Mentions != nil && c.Mentions != nil {
		for _, userID := range content.Mentions.UserIDs {
			if j, ok := c.Mentions.JIDForMXID(ctx, userID); ok && j.User != "" {
				conv.addMention(j.ToUser())
			}
		}
	}
	if strings.TrimSpace(text) == "" {
		return "", nil, fmt.Errorf("%w: empty text", ErrInvalid)
	}
	if content.MsgType == event.MsgEmote {
		text = emotePrefix + text
	}
	if len(text) > MaxTextBytes {
		return "", nil, fmt.Errorf("%w (%d bytes)", ErrTextTooLong, len(text))
	}
	return text, conv.mentions, nil
}

// EditToMeta converts a Matrix edit (its m.new_content, or the content itself when the
// caller already unwrapped it) into an edit of target. Edits cannot change what a message
// replies to, so only the text and mentions are carried.
func (c *Converter) EditToMeta(ctx context.Context, content *event.MessageEventContent, target MessageKey, ts time.Time) (*waE2E.Message, error) {
	if content == nil {
		return nil, fmt.Errorf("%w: no content", ErrInvalid)
	}
	if content.NewContent != nil {
		content = content.NewContent
	}
	edited, err := c.ToMeta(ctx, content, nil)
	if err != nil {
		return nil, err
	}
	return EditMessage(target, edited, ts)
}

// EditMessage wraps edited as an edit of target.
func EditMessage(target MessageKey, edited *waE2E.Message, ts time.Time) (*waE2E.Message, error) {
	if err := target.check(); err != nil {
		return nil, err
	}
	pm := &waE2E.ProtocolMessage{
		Key:           target.proto(),
		Type:          waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(),
		EditedMessage: edited,
	}
	if !ts.IsZero() {
		pm.TimestampMs = proto.Int64(ts.UnixMilli())
	}
	return &waE2E.Message{ProtocolMessage: pm}, nil
}

// RevokeMessage deletes target for everyone.
func RevokeMessage(target MessageKey) (*waE2E.Message, error) {
	if err := target.check(); err != nil {
		return nil, err
	}
	return &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
		Key:  target.proto(),
		Type: waE2E.ProtocolMessage_REVOKE.Enum(),
	}}, nil
}

// ReactionMessage sets the sender's reaction on target to emoji, or removes it when emoji
// is empty. Variation selectors are dropped because WhatsApp's emoji carry none.
func ReactionMessage(target MessageKey, emoji string, ts time.Time) (*waE2E.Message, error) {
	if err := target.check(); err != nil {
		return nil, err
	}
	return &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
		Key:               target.proto(),
		Text:              proto.String(variationselector.Remove(emoji)),
		SenderTimestampMs: proto.Int64(ts.UnixMilli()),
	}}, nil
}
