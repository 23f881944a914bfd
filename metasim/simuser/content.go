package simuser

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// ContentKind is what Send sends (PROTOCOL.md section 4).
type ContentKind string

const (
	ContentText     ContentKind = "text"
	ContentImage    ContentKind = "image"
	ContentVideo    ContentKind = "video"
	ContentAudio    ContentKind = "audio"
	ContentVoice    ContentKind = "voice" // a voice note: audioMessage with ptt
	ContentDocument ContentKind = "document"
	ContentLocation ContentKind = "location"
	ContentReaction ContentKind = "reaction"
	ContentEdit     ContentKind = "edit"
	ContentRevoke   ContentKind = "revoke"
)

// ErrBadContent refuses a Content that cannot be sent as asked.
var ErrBadContent = errors.New("invalid content")

// Content is one message to send.
type Content struct {
	Kind ContentKind `json:"kind"`
	// ID is the stanza id; "" makes a new one.
	ID string `json:"id,omitempty"`
	// Text is the text (WhatsApp markup: *bold*, _italic_, ~strike~, ```mono```,
	// "> " quote), a media caption, an edit's new text, or a reaction's emoji ("" takes
	// the reaction back).
	Text string `json:"text,omitempty"`
	// Mentions go to contextInfo.mentionedJid; the text should hold "@{user}" for each.
	Mentions []jid.JID `json:"mentions,omitempty"`
	// Extended sends text as extendedTextMessage even without mentions or a reply.
	Extended bool `json:"extended,omitempty"`
	// ReplyTo quotes a message (contextInfo stanzaId, participant, quotedMessage).
	ReplyTo *Ref `json:"reply_to,omitempty"`
	// Target is the message a reaction, edit or revoke is about.
	Target   *Ref       `json:"target,omitempty"`
	Media    *MediaSpec `json:"media,omitempty"`
	Location *Location  `json:"location,omitempty"`
}

// Ref names a message: its id and who sent it (user or device; empty means the
// sending user itself). Text is what a reply quotes.
type Ref struct {
	ID     string  `json:"id"`
	Sender jid.JID `json:"sender,omitempty"`
	Text   string  `json:"text,omitempty"`
}

// MediaSpec describes media to send. Without Data, plaintext is generated: a real PNG
// of Width×Height for images, Size random bytes for the rest.
type MediaSpec struct {
	Data      []byte `json:"data,omitempty"`
	Size      int    `json:"size,omitempty"`
	Mimetype  string `json:"mimetype,omitempty"`
	FileName  string `json:"file_name,omitempty"`
	Title     string `json:"title,omitempty"`
	PageCount uint32 `json:"page_count,omitempty"`
	Width     uint32 `json:"width,omitempty"`
	Height    uint32 `json:"height,omitempty"`
	Seconds   uint32 `json:"seconds,omitempty"`
}

// Location is a locationMessage.
type Location struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Name      string  `json:"name,omitempty"`
	Address   string  `json:"address,omitempty"`
}

// contextInfo builds the reply and mention part, nil when there is none.
func (c *Content) contextInfo() *waE2E.ContextInfo {
	if len(c.Mentions) == 0 && c.ReplyTo == nil {
		return nil
	}
	ci := &waE2E.ContextInfo{}
	for _, m := range c.Mentions {
		ci.MentionedJid = append(ci.MentionedJid, m.ToUser().String())
	}
	if r := c.ReplyTo; r != nil {
		ci.StanzaId = proto.String(r.ID)
		if !r.Sender.IsEmpty() {
			ci.Participant = proto.String(r.Sender.ToUser().String())
		}
		ci.QuotedMessage = &waE2E.Message{Conversation: proto.String(r.Text)}
	}
	return ci
}

// textMessage is a conversation, or an extendedTextMessage when it needs one.
func (c *Content) textMessage() *waE2E.Message {
	ci := c.contextInfo()
	if ci == nil && !c.Extended {
		return &waE2E.Message{Conversation: proto.String(c.Text)}
	}
	return &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String(c.Text), ContextInfo: ci}}
}

// targetKey is the MessageKey of c.Target as the sender from writes it in chat to.
func (c *Content) targetKey(from, to jid.JID) (*waE2E.MessageKey, error) {
	if c.Target == nil || c.Target.ID == "" {
		return nil, fmt.Errorf("%w: %s needs a target message id", ErrBadContent, c.Kind)
	}
	author := c.Target.Sender
	if author.IsEmpty() {
		author = from
	}
	fromMe := author.ToUser() == from.ToUser()
	key := &waE2E.MessageKey{RemoteJid: proto.String(to.ToUser().String()), FromMe: proto.Bool(fromMe), Id: proto.String(c.Target.ID)}
	if to.IsGroup() && !fromMe {
		key.Participant = proto.String(author.ToUser().String())
	}
	return key, nil
}

// buildNonMedia builds every kind except media, which needs an upload first.
func (c *Content) buildNonMedia(from, to jid.JID, now time.Time) (*waE2E.Message, error) {
	switch c.Kind {
	case ContentText:
		if c.Text == "" {
			return nil, fmt.Errorf("%w: empty text", ErrBadContent)
		}
		return c.textMessage(), nil
	case ContentLocation:
		if c.Location == nil {
			return nil, fmt.Errorf("%w: location without coordinates", ErrBadContent)
		}
		l := c.Location
		loc := &waE2E.LocationMessage{DegreesLatitude: proto.Float64(l.Latitude), DegreesLongitude: proto.Float64(l.Longitude),
			ContextInfo: c.contextInfo()}
		if l.Name != "" {
			loc.Name = proto.String(l.Name)
		}
		if l.Address != "" {
			loc.Address = proto.String(l.Address)
		}
		return &waE2E.Message{LocationMessage: loc}, nil
	case ContentReaction:
		key, err := c.targetKey(from, to)
		if err != nil {
			return nil, err
		}
		return &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Key: key, Text: proto.String(c.Text),
			SenderTimestampMs: proto.Int64(now.UnixMilli())}}, nil
	case ContentEdit:
		if c.Text == "" {
			return nil, fmt.Errorf("%w: an edit needs the new text", ErrBadContent)
		}
		key, err := c.ownKey(from, to)
		if err != nil {
			return nil, err
		}
		edited := (&Content{Kind: ContentText, Text: c.Text, Mentions: c.Mentions, Extended: c.Extended}).textMessage()
		return &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Key: key,
			Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), EditedMessage: edited, TimestampMs: proto.Int64(now.UnixMilli())}}, nil
	case ContentRevoke:
		key, err := c.ownKey(from, to)
		if err != nil {
			return nil, err
		}
		return &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Key: key, Type: waE2E.ProtocolMessage_REVOKE.Enum(),
			TimestampMs: proto.Int64(now.UnixMilli())}}, nil
	}
	return nil, fmt.Errorf("%w: unknown kind %q", ErrBadContent, c.Kind)
}

// ownKey is the key of one of our own messages (edits and revokes: only by the sender,
// section 4). The simulator does not check the time windows: a test may want to see
// the receiver refuse a late edit.
func (c *Content) ownKey(from, to jid.JID) (*waE2E.MessageKey, error) {
	if c.Target != nil && !c.Target.Sender.IsEmpty() && c.Target.Sender.ToUser() != from.ToUser() {
		return nil, fmt.Errorf("%w: only the sender may %s a message", ErrBadContent, c.Kind)
	}
	return c.targetKey(from, to)
}

// isMedia reports whether the kind carries a blob.
func (k ContentKind) isMedia() bool {
	switch k {
	case ContentImage, ContentVideo, ContentAudio, ContentVoice, ContentDocument:
		return true
	}
	return false
}
