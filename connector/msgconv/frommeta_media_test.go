package msgconv

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// fakeUploader records what it was asked to upload and answers with a fixed result.
type fakeUploader struct {
	got  *IncomingMedia
	err  error
	file *event.EncryptedFileInfo
}

func (f *fakeUploader) UploadIncoming(_ context.Context, m *IncomingMedia) (*UploadedMedia, error) {
	f.got = m
	if f.err != nil {
		return nil, f.err
	}
	if f.file != nil {
		return &UploadedMedia{File: f.file, Size: 1234}, nil
	}
	return &UploadedMedia{URL: "mxc://example.org/abc", Size: 1234}, nil
}

var (
	testKey    = bytes.Repeat([]byte{1}, 32)
	testSHA    = bytes.Repeat([]byte{2}, 32)
	testEncSHA = bytes.Repeat([]byte{3}, 32)
)

func TestFromMetaMedia(t *testing.T) {
	type want struct {
		msgType  event.MessageType
		body     string
		html     string
		fileName string
		mime     string
		w, h     int
		duration int
		voice    bool
		media    IncomingMedia // fields checked: Type, Voice, DirectPath, FileLength, FileName
	}
	cases := []struct {
		name string
		msg  *waE2E.Message
		want want
	}{
		{"image with caption", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			Mimetype: proto.String("image/png"), Caption: proto.String("Our *office*"), Width: proto.Uint32(640), Height: proto.Uint32(480),
			DirectPath: proto.String("/v/img"), FileLength: proto.Uint64(1234), MediaKey: testKey, FileSha256: testSHA, FileEncSha256: testEncSHA}},
			want{msgType: event.MsgImage, body: "Our *office*", html: "Our <strong>office</strong>", fileName: "image.png", mime: "image/png", w: 640, h: 480,
				media: IncomingMedia{Type: mediacrypt.Image, DirectPath: "/v/img", FileLength: 1234, FileName: "image.png"}}},
		{"video", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{
			Mimetype: proto.String("video/mp4"), Seconds: proto.Uint32(7), Width: proto.Uint32(320), Height: proto.Uint32(240), DirectPath: proto.String("/v/vid")}},
			want{msgType: event.MsgVideo, body: "video.mp4", fileName: "video.mp4", mime: "video/mp4", w: 320, h: 240, duration: 7000,
				media: IncomingMedia{Type: mediacrypt.Video, DirectPath: "/v/vid", FileName: "video.mp4"}}},
		{"voice note", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
			Mimetype: proto.String("audio/ogg; codecs=opus"), Seconds: proto.Uint32(4), Ptt: proto.Bool(true), DirectPath: proto.String("/v/ptt"),
			Waveform: []byte{0, 50, 100, 255}}},
			want{msgType: event.MsgAudio, body: "Voice message.ogg", fileName: "Voice message.ogg", mime: "audio/ogg; codecs=opus", duration: 4000, voice: true,
				media: IncomingMedia{Type: mediacrypt.Audio, Voice: true, DirectPath: "/v/ptt", FileName: "Voice message.ogg"}}},
		{"audio", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{Mimetype: proto.String("audio/mpeg"), Seconds: proto.Uint32(180)}},
			want{msgType: event.MsgAudio, body: "audio.mp3", fileName: "audio.mp3", mime: "audio/mpeg", duration: 180000,
				media: IncomingMedia{Type: mediacrypt.Audio, FileName: "audio.mp3"}}},
		{"document with name and caption", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{
			Mimetype: proto.String("application/pdf"), FileName: proto.String("report.pdf"), Title: proto.String("Report"), Caption: proto.String("read this")}},
			want{msgType: event.MsgFile, body: "read this", fileName: "report.pdf", mime: "application/pdf",
				media: IncomingMedia{Type: mediacrypt.Document, FileName: "report.pdf"}}},
		{"document named by title", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{Title: proto.String("Minutes")}},
			want{msgType: event.MsgFile, body: "Minutes", fileName: "Minutes", mime: "application/octet-stream",
				media: IncomingMedia{Type: mediacrypt.Document, FileName: "Minutes"}}},
		{"path tricks in the file name", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String("../../etc/pass\x00wd"), Mimetype: proto.String("not a type")}},
			want{msgType: event.MsgFile, body: "pass_wd", fileName: "pass_wd", mime: "application/octet-stream",
				media: IncomingMedia{Type: mediacrypt.Document, FileName: "pass_wd"}}},
		{"windows path in the file name", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String(`C:\Users\x\a.txt`)}},
			want{msgType: event.MsgFile, body: "a.txt", fileName: "a.txt", mime: "application/octet-stream",
				media: IncomingMedia{Type: mediacrypt.Document, FileName: "a.txt"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := &fakeUploader{}
			conv := testConverter()
			conv.Media = up
			cm, err := conv.FromMeta(context.Background(), MetaInfo{Chat: jidWA, Sender: jidWA}, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(cm.Parts) != 1 {
				t.Fatalf("parts %+v", cm.Parts)
			}
			c := cm.Parts[0].Content
			if c.MsgType != tc.want.msgType || c.Body != tc.want.body || c.FileName != tc.want.fileName || c.FormattedBody != tc.want.html {
				t.Errorf("type %q body %q filename %q html %q", c.MsgType, c.Body, c.FileName, c.FormattedBody)
			}
			if c.URL != "mxc://example.org/abc" || c.File != nil {
				t.Errorf("url %q file %+v", c.URL, c.File)
			}
			if c.Info == nil || c.Info.MimeType != tc.want.mime || c.Info.Size != 1234 || c.Info.Width != tc.want.w ||
				c.Info.Height != tc.want.h || c.Info.Duration != tc.want.duration {
				t.Errorf("info %+v", c.Info)
			}
			if voice := c.MSC3245Voice != nil; voice != tc.want.voice {
				t.Errorf("voice %v", voice)
			}
			if tc.want.voice && (c.MSC1767Audio == nil || c.MSC1767Audio.Duration != tc.want.duration ||
				!slices.Equal(c.MSC1767Audio.Waveform, []int{0, 512, 1024, 1024})) {
				t.Errorf("msc1767 audio %+v", c.MSC1767Audio)
			}
			g, w := up.got, tc.want.media
			if g.Type != w.Type || g.Voice != w.Voice || g.DirectPath != w.DirectPath || g.FileLength != w.FileLength || g.FileName != w.FileName {
				t.Errorf("asked to upload %+v", g)
			}
		})
	}
}

// In an encrypted room the content carries the file, whose URL is in it, and no url.
func TestFromMetaMediaEncrypted(t *testing.T) {
	file := &event.EncryptedFileInfo{URL: "mxc://example.org/enc"}
	conv := testConverter()
	conv.Media = &fakeUploader{file: file}
	cm, err := conv.FromMeta(context.Background(), MetaInfo{Chat: jidWA, Sender: jidWA},
		&waE2E.Message{ImageMessage: &waE2E.ImageMessage{Mimetype: proto.String("image/jpeg")}})
	if err != nil {
		t.Fatal(err)
	}
	if c := cm.Parts[0].Content; c.File != file || c.URL != "" {
		t.Fatalf("url %q file %+v", c.URL, c.File)
	}
}

// A failed attachment is a notice naming the file and the reason, keeping the caption
// and the reply.
func TestFromMetaMediaFailure(t *testing.T) {
	cases := []struct {
		name string
		msg  *waE2E.Message
		err  error
		want string
	}{
		{"too large", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{Mimetype: proto.String("video/mp4"), Caption: proto.String("holiday")}},
			&MediaFailure{Reason: "it is 70 MiB, over this bridge's limit of 64 MiB for videos"},
			"The video \"video.mp4\" could not be bridged: it is 70 MiB, over this bridge's limit of 64 MiB for videos.\nCaption: holiday"},
		{"voice", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{Ptt: proto.Bool(true), Mimetype: proto.String("audio/ogg")}},
			&MediaFailure{Reason: "its integrity check failed", Err: mediacrypt.ErrBadMAC},
			"The voice message \"Voice message.ogg\" could not be bridged: its integrity check failed."},
		{"plain error says little", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String("a.pdf")}},
			errors.New("secret detail http://host/path"),
			"The document \"a.pdf\" could not be bridged: the bridge hit an internal error."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conv := testConverter()
			conv.Media = &fakeUploader{err: tc.err}
			msg := proto.Clone(tc.msg).(*waE2E.Message)
			ci := &waE2E.ContextInfo{StanzaId: proto.String("Q1"), Participant: proto.String(jidWA.String())}
			switch {
			case msg.VideoMessage != nil:
				msg.VideoMessage.ContextInfo = ci
			case msg.AudioMessage != nil:
				msg.AudioMessage.ContextInfo = ci
			case msg.DocumentMessage != nil:
				msg.DocumentMessage.ContextInfo = ci
			}
			cm, err := conv.FromMeta(context.Background(), MetaInfo{Chat: jidWA, Sender: jidWA}, msg)
			if err != nil {
				t.Fatal(err)
			}
			c := cm.Parts[0].Content
			if c.MsgType != event.MsgNotice || c.Body != tc.want {
				t.Errorf("%q %q", c.MsgType, c.Body)
			}
			if strings.Contains(c.Body, "http") {
				t.Error("notice leaks the cause")
			}
			if cm.ReplyTo == nil || cm.ReplyTo.MessageID != testMessageID(jidWA, jidWA, "Q1") {
				t.Errorf("reply %+v", cm.ReplyTo)
			}
		})
	}
}

// A caption's mentions become pills and mentions, like a text's.
func TestFromMetaMediaCaptionMentions(t *testing.T) {
	conv := testConverter()
	conv.Media = &fakeUploader{}
	msg := &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("look @491701234567"),
		ContextInfo: &waE2E.ContextInfo{MentionedJid: []string{jidWA.String()}}}}
	cm, err := conv.FromMeta(context.Background(), MetaInfo{Chat: jidWA, Sender: jidWA}, msg)
	if err != nil {
		t.Fatal(err)
	}
	c := cm.Parts[0].Content
	if c.Body != "look Wanda <WA>" || c.FormattedBody != "look "+pillWA || c.Mentions == nil || len(c.Mentions.UserIDs) != 1 || c.Mentions.UserIDs[0] != id.UserID(ghostWA) {
		t.Errorf("body %q html %q mentions %+v", c.Body, c.FormattedBody, c.Mentions)
	}
}

// thumbUploader uploads the attachment with a preview.
type thumbUploader struct{ fakeUploader }

func (f *thumbUploader) UploadIncoming(ctx context.Context, m *IncomingMedia) (*UploadedMedia, error) {
	up, err := f.fakeUploader.UploadIncoming(ctx, m)
	if err == nil && len(m.Thumbnail) > 0 {
		up.Thumbnail = &UploadedThumbnail{URL: "mxc://example.org/thumb", Width: 32, Height: 24, Size: len(m.Thumbnail), Mimetype: "image/jpeg"}
	}
	return up, err
}

// The message's inline preview goes to the uploader and becomes the event's thumbnail.
func TestFromMetaMediaThumbnail(t *testing.T) {
	conv := testConverter()
	up := &thumbUploader{}
	conv.Media = up
	thumb := []byte("\xff\xd8 a jpeg")
	cm, err := conv.FromMeta(context.Background(), MetaInfo{Chat: jidWA, Sender: jidWA},
		&waE2E.Message{VideoMessage: &waE2E.VideoMessage{Mimetype: proto.String("video/mp4"), JpegThumbnail: thumb}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(up.got.Thumbnail, thumb) {
		t.Errorf("uploader got thumbnail %q", up.got.Thumbnail)
	}
	info := cm.Parts[0].Content.Info
	if info.ThumbnailURL != "mxc://example.org/thumb" || info.ThumbnailInfo == nil || info.ThumbnailInfo.Width != 32 ||
		info.ThumbnailInfo.Height != 24 || info.ThumbnailInfo.Size != len(thumb) || info.ThumbnailInfo.MimeType != "image/jpeg" {
		t.Errorf("info %+v thumbnail %+v", info, info.ThumbnailInfo)
	}
}
