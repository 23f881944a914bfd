package msgconv

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"path"
	"strings"

	"go.mau.fi/util/exmime"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// IncomingMedia is the attachment of an incoming image, video, audio or document
// message: where its blob is, how to check and decrypt it, and what the Matrix event
// says about it.
type IncomingMedia struct {
	Type  mediacrypt.MediaType
	Voice bool // a voice note (audioMessage with ptt)

	DirectPath    string
	URL           string
	MediaKey      []byte
	FileSHA256    []byte
	FileEncSHA256 []byte
	FileLength    uint64 // declared plaintext length; 0 = not declared

	Mimetype string // as declared, checked to be a media type
	FileName string // to show and to offer when saving, never empty
	Width    int
	Height   int
	Seconds  int
	// Waveform is a voice note's loudness, WhatsApp's 0–100 per sample.
	Waveform []byte
	// Thumbnail is the message's small inline JPEG preview (images, videos,
	// documents), if any; unverified, so uploaders check it is a JPEG.
	Thumbnail []byte
}

// Description names the attachment for a person: "the image photo.png".
func (m *IncomingMedia) Description() string {
	kind := m.Type.String()
	if m.Voice {
		kind = "voice message"
	}
	return fmt.Sprintf("the %s %q", kind, m.FileName)
}

// UploadedMedia is where an attachment landed in the Matrix content repository: URL for
// rooms without encryption, File (holding its own URL) for encrypted ones. With direct
// media URL is the bridge's own mxc:// URI, served on demand.
type UploadedMedia struct {
	URL  id.ContentURIString
	File *event.EncryptedFileInfo
	Size int64 // plaintext bytes; with direct media the declared length, 0 if none
	// Thumbnail is the uploaded preview, nil when there was none or it failed.
	Thumbnail *UploadedThumbnail
	// DBMetadata, when set, is stored with the message part (bridgev2's
	// ConvertedMessagePart.DBMetadata): what the uploader needs to serve the file later.
	DBMetadata any
}

// UploadedThumbnail is an uploaded preview image: URL or File like UploadedMedia.
type UploadedThumbnail struct {
	URL           id.ContentURIString
	File          *event.EncryptedFileInfo
	Width, Height int
	Size          int
	Mimetype      string
}

// MediaUploader fetches an attachment from Meta's media hosts, verifies it, and puts
// it in the Matrix content repository. An error should be a *MediaFailure, whose
// reason the Matrix user sees.
type MediaUploader interface {
	UploadIncoming(ctx context.Context, m *IncomingMedia) (*UploadedMedia, error)
}

// MediaFailure is why an attachment could not be bridged, in words for the person who
// receives it; Err is the cause for logs.
type MediaFailure struct {
	Reason string
	Err    error
}

func (f *MediaFailure) Error() string {
	if f.Err == nil {
		return f.Reason
	}
	return f.Reason + ": " + f.Err.Error()
}

func (f *MediaFailure) Unwrap() error { return f.Err }

// mediaOf reads the attachment of msg; ok is false for messages without one.
func mediaOf(msg *waE2E.Message) (m *IncomingMedia, caption string, ci *waE2E.ContextInfo, ok bool) {
	switch {
	case msg.GetImageMessage() != nil:
		im := msg.GetImageMessage()
		m = &IncomingMedia{Type: mediacrypt.Image, DirectPath: im.GetDirectPath(), URL: im.GetUrl(),
			MediaKey: im.GetMediaKey(), FileSHA256: im.GetFileSha256(), FileEncSHA256: im.GetFileEncSha256(),
			FileLength: im.GetFileLength(), Mimetype: im.GetMimetype(), Width: int(im.GetWidth()), Height: int(im.GetHeight()),
			Thumbnail: im.GetJpegThumbnail()}
		caption, ci = im.GetCaption(), im.GetContextInfo()
	case msg.GetVideoMessage() != nil:
		vm := msg.GetVideoMessage()
		m = &IncomingMedia{Type: mediacrypt.Video, DirectPath: vm.GetDirectPath(), URL: vm.GetUrl(),
			MediaKey: vm.GetMediaKey(), FileSHA256: vm.GetFileSha256(), FileEncSHA256: vm.GetFileEncSha256(),
			FileLength: vm.GetFileLength(), Mimetype: vm.GetMimetype(), Width: int(vm.GetWidth()), Height: int(vm.GetHeight()),
			Seconds: int(vm.GetSeconds()), Thumbnail: vm.GetJpegThumbnail()}
		caption, ci = vm.GetCaption(), vm.GetContextInfo()
	case msg.GetAudioMessage() != nil:
		am := msg.GetAudioMessage()
		m = &IncomingMedia{Type: mediacrypt.Audio, Voice: am.GetPtt(), DirectPath: am.GetDirectPath(), URL: am.GetUrl(),
			MediaKey: am.GetMediaKey(), FileSHA256: am.GetFileSha256(), FileEncSHA256: am.GetFileEncSha256(),
			FileLength: am.GetFileLength(), Mimetype: am.GetMimetype(), Seconds: int(am.GetSeconds()), Waveform: am.GetWaveform()}
		ci = am.GetContextInfo()
	case msg.GetDocumentMessage() != nil:
		dm := msg.GetDocumentMessage()
		m = &IncomingMedia{Type: mediacrypt.Document, DirectPath: dm.GetDirectPath(), URL: dm.GetUrl(),
			MediaKey: dm.GetMediaKey(), FileSHA256: dm.GetFileSha256(), FileEncSHA256: dm.GetFileEncSha256(),
			FileLength: dm.GetFileLength(), Mimetype: dm.GetMimetype(), FileName: dm.GetFileName(), Thumbnail: dm.GetJpegThumbnail()}
		if m.FileName == "" {
			m.FileName = dm.GetTitle()
		}
		caption, ci = dm.GetCaption(), dm.GetContextInfo()
	default:
		return nil, "", nil, false
	}
	m.Mimetype = cleanMimetype(m.Mimetype)
	m.FileName = cleanFileName(m.FileName, m.Type, m.Voice, m.Mimetype)
	return m, caption, ci, true
}

// cleanMimetype keeps a declared type only if it parses; clients pick players and
// viewers by it, so junk becomes application/octet-stream.
func cleanMimetype(s string) string {
	if s == "" || len(s) > 255 {
		return "application/octet-stream"
	}
	if _, _, err := mime.ParseMediaType(s); err != nil || !strings.Contains(s, "/") {
		return "application/octet-stream"
	}
	return s
}

// cleanFileName keeps only the last path element of a sender's file name (no
// directories, no control characters) and makes one up from the type when there is
// none.
func cleanFileName(name string, t mediacrypt.MediaType, voice bool, mimetype string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(path.Base(strings.ReplaceAll(name, "\\", "/")), "_"))
	if name == "." || name == "_" || name == ".." {
		name = ""
	}
	if len(name) > 255 {
		name = strings.ToValidUTF8(name[:255], "")
	}
	if name != "" {
		return name
	}
	base := t.String()
	if voice {
		base = "Voice message"
	}
	return base + exmime.ExtensionFromMimetype(mimetype)
}

// mediaPart converts an attachment. Without an uploader (tests, or a converter not
// wired to a portal) it is the placeholder notice; when the upload fails, a notice
// saying which file failed and why, so that nothing vanishes silently.
func (c *Converter) mediaPart(ctx context.Context, msg *waE2E.Message, m *IncomingMedia, caption string, ci *waE2E.ContextInfo) *bridgev2.ConvertedMessagePart {
	if c.Media == nil {
		return Placeholder(msg)
	}
	up, err := c.Media.UploadIncoming(ctx, m)
	if err != nil {
		return MediaFailureNotice(m, caption, err)
	}
	content := &event.MessageEventContent{
		Body:     m.FileName,
		FileName: m.FileName,
		URL:      up.URL,
		File:     up.File,
		Info:     &event.FileInfo{MimeType: m.Mimetype, Size: int(up.Size)},
		Mentions: &event.Mentions{},
	}
	if th := up.Thumbnail; th != nil {
		content.Info.ThumbnailURL, content.Info.ThumbnailFile = th.URL, th.File
		content.Info.ThumbnailInfo = &event.FileInfo{MimeType: th.Mimetype, Width: th.Width, Height: th.Height, Size: th.Size}
	}
	switch m.Type {
	case mediacrypt.Image:
		content.MsgType = event.MsgImage
		content.Info.Width, content.Info.Height = m.Width, m.Height
	case mediacrypt.Video:
		content.MsgType = event.MsgVideo
		content.Info.Width, content.Info.Height = m.Width, m.Height
		content.Info.Duration = m.Seconds * 1000
	case mediacrypt.Audio:
		content.MsgType = event.MsgAudio
		content.Info.Duration = m.Seconds * 1000
		if m.Voice {
			content.MSC3245Voice = &event.MSC3245Voice{}
			content.MSC1767Audio = &event.MSC1767Audio{Duration: m.Seconds * 1000, Waveform: matrixWaveform(m.Waveform)}
		}
	default:
		content.MsgType = event.MsgFile
	}
	if caption != "" {
		// A caption is the body next to a filename (Matrix v1.10), formatted like text.
		if len(caption) > MaxTextBytes {
			caption = caption[:MaxTextBytes]
		}
		caption = strings.ReplaceAll(strings.ToValidUTF8(caption, "\uFFFD"), "\x00", "")
		pills := c.pills(ctx, ci.GetMentionedJid())
		conv := markupToHTML{text: caption, pills: pills}
		formatted := conv.render()
		content.Body = plainBody(caption, pills)
		if conv.formatted || stripJoiners(caption, 0, len(caption)) != caption {
			content.Format = event.FormatHTML
			content.FormattedBody = formatted
		}
		for _, userID := range conv.mentioned {
			content.Mentions.Add(userID)
		}
	}
	return &bridgev2.ConvertedMessagePart{Type: event.EventMessage, Content: content, DBMetadata: up.DBMetadata}
}

// MediaFailureNotice is the notice that stands in for an attachment that could not be
// bridged: which file, why, and its caption, which would otherwise be lost with it.
func MediaFailureNotice(m *IncomingMedia, caption string, err error) *bridgev2.ConvertedMessagePart {
	reason := "the bridge hit an internal error"
	var f *MediaFailure
	if errors.As(err, &f) && f.Reason != "" {
		reason = f.Reason
	}
	what := m.Description()
	body := fmt.Sprintf("%s%s could not be bridged: %s.", strings.ToUpper(what[:1]), what[1:], reason)
	if caption != "" {
		body += "\nCaption: " + strings.ReplaceAll(strings.ToValidUTF8(caption, "\uFFFD"), "\x00", "")
	}
	return &bridgev2.ConvertedMessagePart{
		Type: event.EventMessage,
		Content: &event.MessageEventContent{
			MsgType:  event.MsgNotice,
			Body:     body,
			Mentions: &event.Mentions{},
		},
	}
}

// matrixWaveform scales WhatsApp's 0–100 samples to MSC3246's 0–1024; at most 256
// samples are kept, enough for any player.
func matrixWaveform(wa []byte) []int {
	if len(wa) == 0 {
		return nil
	}
	wa = wa[:min(len(wa), 256)]
	out := make([]int, len(wa))
	for i, v := range wa {
		out[i] = min(int(v), 100) * 1024 / 100
	}
	return out
}
