package msgconv

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// MaxCaptionBytes is the longest caption sent with a media message. WhatsApp shows
// captions up to 1024 characters; four bytes a character keeps every such caption.
const MaxCaptionBytes = 4096

// IsMedia reports whether a Matrix message type carries a file this package converts
// with MediaToMeta. Stickers come as event.CapMsgSticker (bridgev2 sets it).
func IsMedia(msgType event.MessageType) bool {
	switch msgType {
	case event.MsgImage, event.MsgVideo, event.MsgAudio, event.MsgFile, event.CapMsgSticker:
		return true
	}
	return false
}

// MediaTypeOf is the WhatsApp media a Matrix file message becomes: images and stickers
// are images, voice messages are audio (with ptt), files are documents.
func MediaTypeOf(content *event.MessageEventContent) (mediacrypt.MediaType, error) {
	if content == nil {
		return 0, fmt.Errorf("%w: no content", ErrInvalid)
	}
	switch content.MsgType {
	case event.MsgImage, event.CapMsgSticker:
		return mediacrypt.Image, nil
	case event.MsgVideo:
		return mediacrypt.Video, nil
	case event.MsgAudio:
		return mediacrypt.Audio, nil
	case event.MsgFile:
		return mediacrypt.Document, nil
	}
	return 0, fmt.Errorf("%w: message type %q", ErrUnsupported, content.MsgType)
}

// IsVoice reports whether a Matrix audio message is a voice message (MSC3245), which
// WhatsApp shows as a voice note (ptt).
func IsVoice(content *event.MessageEventContent) bool {
	return content != nil && content.MsgType == event.MsgAudio && content.MSC3245Voice != nil
}

// OutgoingMedia is an encrypted, hosted file: everything a media message carries
// besides what the Matrix event says (caption, file name, duration, reply).
type OutgoingMedia struct {
	URL        string // absolute, where Meta's proxy fetches the blob
	DirectPath string // the path part of URL
	MediaKey   []byte
	mediacrypt.Result
	Mimetype string
	// Width and Height are the image's or video's size in pixels, 0 when unknown.
	Width, Height uint32
	// Thumbnail is a small JPEG shown before the file is fetched; nil for none.
	Thumbnail []byte
	// KeyTimestamp is when the media key was made (mediaKeyTimestamp, in seconds).
	KeyTimestamp time.Time
}

// MediaToMeta converts a Matrix m.image, m.video, m.audio, m.file or sticker whose file
// media describes into a waE2E media message. reply may be nil. A Matrix caption (a
// body that differs from the file name) becomes the caption, with mentions; audio has
// no caption on WhatsApp, so an audio caption is dropped.
func (c *Converter) MediaToMeta(ctx context.Context, content *event.MessageEventContent, reply *ReplyTarget, media *OutgoingMedia) (*waE2E.Message, error) {
	t, err := MediaTypeOf(content)
	if err != nil {
		return nil, err
	}
	if media == nil || media.URL == "" || media.DirectPath == "" || len(media.MediaKey) != mediacrypt.MediaKeyLength ||
		len(media.FileSHA256) != 32 || len(media.FileEncSHA256) != 32 {
		return nil, fmt.Errorf("%w: media needs a url, a direct path, a media key and both hashes", ErrInvalid)
	}
	ci, err := replyContext(reply)
	if err != nil {
		return nil, err
	}
	var caption *string
	if capContent := captionOf(content); capContent != nil && t != mediacrypt.Audio && content.MsgType != event.CapMsgSticker {
		capt, mentions, err := c.matrixText(ctx, capContent, false)
		if err != nil {
			return nil, err
		}
		if len(capt) > MaxCaptionBytes {
			return nil, fmt.Errorf("%w (caption of %d bytes)", ErrTextTooLong, len(capt))
		}
		caption = proto.String(capt)
		ci = withMentions(ci, mentions)
	}
	mime := media.Mimetype
	if mime == "" {
		mime = defaultMimetype(t)
	}
	var ts *int64
	if !media.KeyTimestamp.IsZero() {
		ts = proto.Int64(media.KeyTimestamp.Unix())
	}
	url, dp, size := proto.String(media.URL), proto.String(media.DirectPath), proto.Uint64(media.FileLength)
	width, height := opt32(media.Width), opt32(media.Height)
	seconds := opt32(durationSeconds(content))
	switch t {
	case mediacrypt.Image:
		return &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			Url: url, Mimetype: proto.String(mime), Caption: caption, FileSha256: media.FileSHA256, FileLength: size,
			Height: height, Width: width, MediaKey: media.MediaKey, FileEncSha256: media.FileEncSHA256,
			DirectPath: dp, MediaKeyTimestamp: ts, JpegThumbnail: media.Thumbnail, ContextInfo: ci,
		}}, nil
	case mediacrypt.Video:
		var gif *bool
		if content.Info != nil && content.Info.MauGIF {
			gif = proto.Bool(true)
		}
		return &waE2E.Message{VideoMessage: &waE2E.VideoMessage{
			Url: url, Mimetype: proto.String(mime), FileSha256: media.FileSHA256, FileLength: size, Seconds: seconds,
			MediaKey: media.MediaKey, Caption: caption, GifPlayback: gif, Height: height, Width: width,
			FileEncSha256: media.FileEncSHA256, DirectPath: dp, MediaKeyTimestamp: ts, JpegThumbnail: media.Thumbnail,
			ContextInfo: ci,
		}}, nil
	case mediacrypt.Audio:
		var ptt *bool
		if IsVoice(content) {
			ptt = proto.Bool(true)
		}
		return &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
			Url: url, Mimetype: proto.String(mime), FileSha256: media.FileSHA256, FileLength: size, Seconds: seconds,
			Ptt: ptt, MediaKey: media.MediaKey, FileEncSha256: media.FileEncSHA256, DirectPath: dp,
			MediaKeyTimestamp: ts, ContextInfo: ci,
		}}, nil
	default:
		name := DocumentFileName(content)
		return &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{
			Url: url, Mimetype: proto.String(mime), Title: proto.String(documentTitle(name)), FileSha256: media.FileSHA256,
			FileLength: size, MediaKey: media.MediaKey, FileName: proto.String(name), FileEncSha256: media.FileEncSHA256,
			DirectPath: dp, MediaKeyTimestamp: ts, JpegThumbnail: media.Thumbnail, ContextInfo: ci, Caption: caption,
		}}, nil
	}
}

// captionOf is the Matrix caption: the body when the event names its file separately
// (MSC2530), as HTML when it has a formatted one.
func captionOf(content *event.MessageEventContent) *event.MessageEventContent {
	text := content.GetCaption()
	if strings.TrimSpace(text) == "" {
		return nil
	}
	capt := &event.MessageEventContent{MsgType: event.MsgText, Body: text, Mentions: content.Mentions}
	if formatted := content.GetFormattedCaption(); formatted != "" {
		capt.Format, capt.FormattedBody = event.FormatHTML, formatted
	}
	return capt
}

// DocumentFileName is the name a Matrix file is sent with: its filename, or the body
// of an event that has none, or "file" when both are empty.
func DocumentFileName(content *event.MessageEventContent) string {
	name := strings.TrimSpace(content.GetFileName())
	if name == "" {
		return "file"
	}
	return name
}

// documentTitle is the name without its extension, as WhatsApp titles documents.
func documentTitle(name string) string {
	if title := strings.TrimSuffix(name, path.Ext(name)); title != "" {
		return title
	}
	return name
}

// durationSeconds is the event's duration (info.duration, or MSC1767 audio's) in whole
// seconds, rounded; a non-zero duration is at least one second.
func durationSeconds(content *event.MessageEventContent) uint32 {
	ms := 0
	if content.Info != nil {
		ms = content.Info.Duration
	}
	if ms <= 0 && content.MSC1767Audio != nil {
		ms = content.MSC1767Audio.Duration
	}
	if ms <= 0 {
		return 0
	}
	return uint32(max((ms+500)/1000, 1))
}

// defaultMimetype is used when neither the event nor the file tells the type.
func defaultMimetype(t mediacrypt.MediaType) string {
	switch t {
	case mediacrypt.Image:
		return "image/jpeg"
	case mediacrypt.Video:
		return "video/mp4"
	case mediacrypt.Audio:
		return "audio/ogg; codecs=opus"
	}
	return "application/octet-stream"
}

func opt32(v uint32) *uint32 {
	if v == 0 {
		return nil
	}
	return proto.Uint32(v)
}
