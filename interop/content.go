package interop

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// Message stanza types and media types of PROTOCOL.md section 3.3.
const (
	MessageTypeText     = "text"
	MessageTypeMedia    = "media"
	MessageTypeReaction = "reaction"

	MediaImage    = "image"
	MediaVideo    = "video"
	MediaPTT      = "ptt"
	MediaAudio    = "audio"
	MediaDocument = "document"

	// EditMessage and EditSenderRevoke are the edit attribute of edits and of a
	// sender's deletion for everyone.
	EditMessage      = "1"
	EditSenderRevoke = "7"
)

// ErrNothingToSend refuses a Message without content this protocol can carry.
var ErrNothingToSend = errors.New("message has no content to send")

// ContentAttrs are the stanza attributes derived from a Message's content.
type ContentAttrs struct {
	Type      string // MessageTypeText, MessageTypeMedia or MessageTypeReaction
	MediaType string // for media: MediaImage, …; on every <enc>
	Edit      string // EditMessage, EditSenderRevoke or ""
}

// Classify derives type, mediatype and edit from a Message (PROTOCOL.md sections
// 3.3 and 4). A location travels as text: it is not one of the media types. A
// sender key distribution is the Account's business and is refused here.
func Classify(msg *waE2E.Message) (ContentAttrs, error) {
	switch {
	case msg == nil:
		return ContentAttrs{}, ErrNothingToSend
	case msg.SenderKeyDistributionMessage != nil:
		return ContentAttrs{}, errors.New("a sender key distribution is added by the Account, not by the caller")
	case msg.ReactionMessage != nil:
		if msg.ReactionMessage.GetKey().GetId() == "" {
			return ContentAttrs{}, errors.New("a reaction needs the key of the message it reacts to")
		}
		return ContentAttrs{Type: MessageTypeReaction}, nil
	case msg.ProtocolMessage != nil:
		pm := msg.ProtocolMessage
		if pm.GetKey().GetId() == "" {
			return ContentAttrs{}, errors.New("a protocol message needs the key of the message it changes")
		}
		switch pm.GetType() {
		case waE2E.ProtocolMessage_REVOKE:
			return ContentAttrs{Type: MessageTypeText, Edit: EditSenderRevoke}, nil
		case waE2E.ProtocolMessage_MESSAGE_EDIT:
			if pm.EditedMessage == nil {
				return ContentAttrs{}, errors.New("an edit needs the edited message")
			}
			return ContentAttrs{Type: MessageTypeText, Edit: EditMessage}, nil
		}
		return ContentAttrs{}, fmt.Errorf("protocol message type %d is not part of the protocol", pm.GetType())
	case msg.ImageMessage != nil:
		return ContentAttrs{Type: MessageTypeMedia, MediaType: MediaImage}, nil
	case msg.VideoMessage != nil:
		return ContentAttrs{Type: MessageTypeMedia, MediaType: MediaVideo}, nil
	case msg.AudioMessage != nil:
		if msg.AudioMessage.GetPtt() {
			return ContentAttrs{Type: MessageTypeMedia, MediaType: MediaPTT}, nil
		}
		return ContentAttrs{Type: MessageTypeMedia, MediaType: MediaAudio}, nil
	case msg.DocumentMessage != nil:
		return ContentAttrs{Type: MessageTypeMedia, MediaType: MediaDocument}, nil
	case msg.Conversation != nil, msg.ExtendedTextMessage != nil, msg.LocationMessage != nil:
		return ContentAttrs{Type: MessageTypeText}, nil
	}
	return ContentAttrs{}, ErrNothingToSend
}

// OutgoingMessage is everything one sent <message> says; Node builds it. It is kept
// apart from the sending so that its shape can be tested without a connection.
type OutgoingMessage struct {
	ID      string
	To      string // the peer user or the group
	Content ContentAttrs
	// PHash is the participant hash; empty for retry answers, which go to one device
	// and for which the gateway skips the check.
	PHash string
	// Parts are the per-device encs inside <participants>.
	Parts []signal.EncryptedPart
	// SKMsg is the group's one skmsg, directly inside <message>.
	SKMsg []byte
	// RetryCount is set on the encs of an answer to a retry receipt.
	RetryCount int
}

// Node builds <message id to type [phash] [edit]>[<participants><to jid><enc/></to>…
// </participants>][<enc type="skmsg"/>].
func (m OutgoingMessage) Node() stanza.Node {
	attrs := stanza.Attrs{"id": m.ID, "to": m.To, "type": m.Content.Type}
	if m.PHash != "" {
		attrs["phash"] = m.PHash
	}
	if m.Content.Edit != "" {
		attrs["edit"] = m.Content.Edit
	}
	var children []stanza.Node
	if len(m.Parts) > 0 {
		tos := make([]stanza.Node, 0, len(m.Parts))
		for _, p := range m.Parts {
			tos = append(tos, stanza.Node{Tag: "to", Attrs: stanza.Attrs{"jid": p.Device.String()},
				Content: []stanza.Node{m.enc(p.Type, p.Ciphertext)}})
		}
		children = append(children, stanza.Node{Tag: "participants", Content: tos})
	}
	if m.SKMsg != nil {
		children = append(children, m.enc(signal.TypeSenderKey, m.SKMsg))
	}
	return stanza.Node{Tag: "message", Attrs: attrs, Content: children}
}

func (m OutgoingMessage) enc(typ string, ciphertext []byte) stanza.Node {
	attrs := stanza.Attrs{"v": "2", "type": typ}
	if m.Content.MediaType != "" {
		attrs["mediatype"] = m.Content.MediaType
	}
	if m.RetryCount > 0 {
		attrs["count"] = strconv.Itoa(m.RetryCount)
	}
	return stanza.Node{Tag: "enc", Attrs: attrs, Content: ciphertext}
}
