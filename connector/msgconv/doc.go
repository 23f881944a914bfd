// Package msgconv converts message content between Matrix events and waE2E messages, both ways.
//
// It is pure: no connection state, no database, no network. Everything it needs to know
// about people (which Matrix user is which Meta user, how to name a message) comes in
// through the small interfaces and functions in this file, so every conversion can be
// tested from a table. It must not import the connector, the interop client, the
// database packages or anything that talks to a server.
//
// Conventions decided here:
//   - Emotes (m.emote) are sent as "/me " + text, the way mautrix bridges do; incoming
//     text starting with "/me " becomes an m.emote again. Notices are sent as plain text.
//   - WhatsApp markup has no escape character. A literal *, _, ~ or ` from a Matrix HTML
//     text node that could open or close formatting gets an invisible U+2060 WORD JOINER
//     on each side, which stops WhatsApp from pairing it, and so does a literal "> ",
//     "- " or "1. " starting a line; incoming text drops those joiners again (and then
//     carries HTML, so the escape survives a trip back). Plain (non-HTML) Matrix bodies
//     are sent verbatim: whoever typed *x* without a formatter meant WhatsApp's emphasis.
//     Known limit: a literal marker glued to generated formatting (<b>x</b>*y*) can only
//     be escaped on one side, since a joiner there would break the formatting.
//   - Texts over MaxTextBytes are refused in both directions with ErrTextTooLong.
//   - Matrix files going out (MediaToMeta): stickers become images, voice messages
//     (MSC3245) ptt audio, m.file documents titled by their name without extension. A
//     caption is the body of an event that names its file separately (MSC2530); audio
//     has no caption on WhatsApp, so an audio caption is dropped. The connector downloads,
//     encrypts and hosts the file; this package only describes it, with a JPEG thumbnail
//     of at most ThumbnailSide pixels (Thumbnail).
package msgconv

import (
	"context"
	"errors"

	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// MaxTextBytes is WhatsApp's limit on the text of one message.
const MaxTextBytes = 65536

var (
	// ErrTextTooLong is returned for a text over MaxTextBytes.
	ErrTextTooLong = errors.New("text is longer than WhatsApp's limit of 65536 bytes")
	// ErrUnsupported is returned for content this package does not convert.
	ErrUnsupported = errors.New("unsupported content")
	// ErrInvalid is returned for content that is malformed (missing keys, bad JIDs).
	ErrInvalid = errors.New("invalid content")
)

// MentionResolver tells which Meta user (a ghost) or third-party user (a bridge user) a
// Matrix user is, so a Matrix mention can become @{user} plus a mentionedJid.
type MentionResolver interface {
	JIDForMXID(ctx context.Context, userID id.UserID) (jid.JID, bool)
}

// UserResolver tells which Matrix user (ghost or bridge user) stands for a JID and the
// name to show in a pill.
type UserResolver interface {
	GhostOrUserForJID(ctx context.Context, j jid.JID) (userID id.UserID, displayname string, ok bool)
}

// MessageIDFunc names a message: the chat (portal) it is in, who sent it, and its stanza id.
type MessageIDFunc func(chat, sender jid.JID, stanzaID string) networkid.MessageID

// Converter holds what the conversions need to know about the outside world. The zero
// value works: mentions then stay plain text and replies are dropped.
type Converter struct {
	Mentions  MentionResolver // Matrix → Meta
	Users     UserResolver    // Meta → Matrix
	MessageID MessageIDFunc   // Meta → Matrix replies, edits, reactions, revokes
	// Media fetches and uploads incoming attachments (Meta → Matrix); nil shows them as
	// a placeholder notice.
	Media MediaUploader
}
