package msgconv

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

func testMedia() *OutgoingMedia {
	return &OutgoingMedia{
		URL:        "https://bridge.example/_interop/v1/media/abc",
		DirectPath: "/_interop/v1/media/abc",
		MediaKey:   bytes.Repeat([]byte{2}, 32),
		Result: mediacrypt.Result{FileSHA256: bytes.Repeat([]byte{1}, 32), FileEncSHA256: bytes.Repeat([]byte{3}, 32),
			FileLength: 12345, EncLength: 12362},
		KeyTimestamp: time.Unix(1764000000, 0),
	}
}

func fileContent(msgType event.MessageType, body, fileName string, info *event.FileInfo) *event.MessageEventContent {
	return &event.MessageEventContent{MsgType: msgType, Body: body, FileName: fileName, URL: "mxc://example.org/x", Info: info}
}

// mediaView is what a test checks of a media message, whatever its kind.
type mediaView struct {
	kind          string // image, video, audio, document
	mimetype      string
	caption       string
	hasCaption    bool
	ptt, gif      bool
	seconds       uint32
	width, height uint32
	fileName      string
	title         string
	thumbnail     []byte
	mentions      []string
	replyTo       string
}

func viewOf(msg *waE2E.Message) mediaView {
	var v mediaView
	var ci *waE2E.ContextInfo
	switch {
	case msg.ImageMessage != nil:
		m := msg.ImageMessage
		v = mediaView{kind: "image", mimetype: m.GetMimetype(), caption: m.GetCaption(), hasCaption: m.Caption != nil,
			width: m.GetWidth(), height: m.GetHeight(), thumbnail: m.JpegThumbnail}
		ci = m.ContextInfo
	case msg.VideoMessage != nil:
		m := msg.VideoMessage
		v = mediaView{kind: "video", mimetype: m.GetMimetype(), caption: m.GetCaption(), hasCaption: m.Caption != nil,
			width: m.GetWidth(), height: m.GetHeight(), seconds: m.GetSeconds(), gif: m.GetGifPlayback(), thumbnail: m.JpegThumbnail}
		ci = m.ContextInfo
	case msg.AudioMessage != nil:
		m := msg.AudioMessage
		v = mediaView{kind: "audio", mimetype: m.GetMimetype(), seconds: m.GetSeconds(), ptt: m.GetPtt()}
		ci = m.ContextInfo
	case msg.DocumentMessage != nil:
		m := msg.DocumentMessage
		v = mediaView{kind: "document", mimetype: m.GetMimetype(), caption: m.GetCaption(), hasCaption: m.Caption != nil,
			fileName: m.GetFileName(), title: m.GetTitle(), thumbnail: m.JpegThumbnail}
		ci = m.ContextInfo
	}
	v.mentions = ci.GetMentionedJid()
	v.replyTo = ci.GetStanzaId()
	return v
}

func TestMediaToMeta(t *testing.T) {
	ctx := context.Background()
	thumb := []byte{0xff, 0xd8, 0xff, 0xd9}
	withMedia := func(f func(m *OutgoingMedia)) *OutgoingMedia {
		m := testMedia()
		f(m)
		return m
	}
	voice := fileContent(event.MsgAudio, "Voice message.ogg", "", &event.FileInfo{MimeType: "audio/ogg", Duration: 3400})
	voice.MSC3245Voice = &event.MSC3245Voice{}
	msc1767 := fileContent(event.MsgAudio, "song.mp3", "", &event.FileInfo{MimeType: "audio/mpeg"})
	msc1767.MSC1767Audio = &event.MSC1767Audio{Duration: 61_000}
	htmlCaption := fileContent(event.MsgImage, "look *here*", "cat.png", &event.FileInfo{MimeType: "image/png"})
	htmlCaption.Format, htmlCaption.FormattedBody = event.FormatHTML, `look <b>here</b> <a href="https://matrix.to/#/@meta_491701234567:example.org">Wanda</a>`
	htmlCaption.Mentions = &event.Mentions{UserIDs: []id.UserID{ghostWA}}
	replyImage := fileContent(event.MsgImage, "cat.png", "", nil)
	replyImage.RelatesTo = replyRelation()
	sticker := fileContent(event.CapMsgSticker, "a happy cat", "", &event.FileInfo{MimeType: "image/webp", Width: 512, Height: 512})
	gifVideo := fileContent(event.MsgVideo, "funny.mp4", "", &event.FileInfo{MimeType: "video/mp4", MauGIF: true})

	cases := []struct {
		name    string
		content *event.MessageEventContent
		media   *OutgoingMedia
		reply   *ReplyTarget
		want    mediaView
	}{
		{"image without caption", fileContent(event.MsgImage, "photo.jpg", "", &event.FileInfo{MimeType: "image/jpeg"}),
			withMedia(func(m *OutgoingMedia) { m.Mimetype, m.Width, m.Height, m.Thumbnail = "image/jpeg", 640, 480, thumb }),
			nil, mediaView{kind: "image", mimetype: "image/jpeg", width: 640, height: 480, thumbnail: thumb}},
		{"image body equal to file name is no caption", fileContent(event.MsgImage, "photo.jpg", "photo.jpg", nil),
			testMedia(), nil, mediaView{kind: "image", mimetype: "image/jpeg"}},
		{"image caption", fileContent(event.MsgImage, "my cat", "cat.png", nil),
			withMedia(func(m *OutgoingMedia) { m.Mimetype = "image/png" }), nil,
			mediaView{kind: "image", mimetype: "image/png", caption: "my cat", hasCaption: true}},
		{"html caption with mention", htmlCaption, withMedia(func(m *OutgoingMedia) { m.Mimetype = "image/png" }), nil,
			mediaView{kind: "image", mimetype: "image/png", caption: "look *here* @491701234567", hasCaption: true,
				mentions: []string{"491701234567@s.whatsapp.net"}}},
		{"image reply", replyImage, testMedia(), &ReplyTarget{StanzaID: "3EB0AA", Sender: jidWA, Text: "hi"},
			mediaView{kind: "image", mimetype: "image/jpeg", replyTo: "3EB0AA"}},
		{"sticker is an image without caption", sticker,
			withMedia(func(m *OutgoingMedia) { m.Mimetype, m.Width, m.Height = "image/webp", 512, 512 }), nil,
			mediaView{kind: "image", mimetype: "image/webp", width: 512, height: 512}},
		{"video with duration and caption", fileContent(event.MsgVideo, "the clip", "clip.mp4", &event.FileInfo{Duration: 12_400}),
			withMedia(func(m *OutgoingMedia) { m.Mimetype, m.Width, m.Height, m.Thumbnail = "video/mp4", 1280, 720, thumb }), nil,
			mediaView{kind: "video", mimetype: "video/mp4", caption: "the clip", hasCaption: true, seconds: 12, width: 1280, height: 720, thumbnail: thumb}},
		{"short video is one second", fileContent(event.MsgVideo, "v.mp4", "", &event.FileInfo{Duration: 200}), testMedia(), nil,
			mediaView{kind: "video", mimetype: "video/mp4", seconds: 1}},
		{"gif video plays as gif", gifVideo, withMedia(func(m *OutgoingMedia) { m.Mimetype = "video/mp4" }), nil,
			mediaView{kind: "video", mimetype: "video/mp4", gif: true}},
		{"voice message is ptt", voice, withMedia(func(m *OutgoingMedia) { m.Mimetype = "audio/ogg" }), nil,
			mediaView{kind: "audio", mimetype: "audio/ogg", ptt: true, seconds: 3}},
		{"audio is not ptt, msc1767 duration", msc1767, withMedia(func(m *OutgoingMedia) { m.Mimetype = "audio/mpeg" }), nil,
			mediaView{kind: "audio", mimetype: "audio/mpeg", seconds: 61}},
		{"audio drops its caption", fileContent(event.MsgAudio, "listen", "a.ogg", nil), testMedia(), nil,
			mediaView{kind: "audio", mimetype: "audio/ogg; codecs=opus"}},
		{"document name and title", fileContent(event.MsgFile, "report.pdf", "", nil),
			withMedia(func(m *OutgoingMedia) { m.Mimetype = "application/pdf" }), nil,
			mediaView{kind: "document", mimetype: "application/pdf", fileName: "report.pdf", title: "report"}},
		{"document caption", fileContent(event.MsgFile, "Q3 numbers", "report.tar.gz", nil), testMedia(), nil,
			mediaView{kind: "document", mimetype: "application/octet-stream", caption: "Q3 numbers", hasCaption: true,
				fileName: "report.tar.gz", title: "report.tar"}},
		{"document without any name", fileContent(event.MsgFile, "", "", nil), testMedia(), nil,
			mediaView{kind: "document", mimetype: "application/octet-stream", fileName: "file", title: "file"}},
		{"dotfile keeps its name as title", fileContent(event.MsgFile, ".bashrc", "", nil), testMedia(), nil,
			mediaView{kind: "document", mimetype: "application/octet-stream", fileName: ".bashrc", title: ".bashrc"}},
	}
	conv := testConverter()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := conv.MediaToMeta(ctx, tc.content, tc.reply, tc.media)
			if err != nil {
				t.Fatal(err)
			}
			got := viewOf(msg)
			if got.kind != tc.want.kind || got.mimetype != tc.want.mimetype || got.caption != tc.want.caption ||
				got.hasCaption != tc.want.hasCaption || got.ptt != tc.want.ptt || got.gif != tc.want.gif ||
				got.seconds != tc.want.seconds || got.width != tc.want.width || got.height != tc.want.height ||
				got.fileName != tc.want.fileName || got.title != tc.want.title || !bytes.Equal(got.thumbnail, tc.want.thumbnail) ||
				!slices.Equal(got.mentions, tc.want.mentions) || got.replyTo != tc.want.replyTo {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			// Every kind carries the hosted blob the same way.
			m := tc.media
			raw, _ := proto.Marshal(msg)
			for _, part := range [][]byte{m.MediaKey, m.FileSHA256, m.FileEncSHA256, []byte(m.URL), []byte(m.DirectPath)} {
				if !bytes.Contains(raw, part) {
					t.Fatalf("message lacks %q", part)
				}
			}
		})
	}
}

func TestMediaToMetaRefusals(t *testing.T) {
	ctx := context.Background()
	noKey := testMedia()
	noKey.MediaKey = nil
	noURL := testMedia()
	noURL.URL = ""
	cases := []struct {
		name    string
		content *event.MessageEventContent
		media   *OutgoingMedia
		reply   *ReplyTarget
		err     error
	}{
		{"text is not media", textContent("hi"), testMedia(), nil, ErrUnsupported},
		{"location is not media", &event.MessageEventContent{MsgType: event.MsgLocation, Body: "here"}, testMedia(), nil, ErrUnsupported},
		{"no content", nil, testMedia(), nil, ErrInvalid},
		{"no media", fileContent(event.MsgImage, "a.png", "", nil), nil, nil, ErrInvalid},
		{"no media key", fileContent(event.MsgImage, "a.png", "", nil), noKey, nil, ErrInvalid},
		{"no url", fileContent(event.MsgImage, "a.png", "", nil), noURL, nil, ErrInvalid},
		{"reply without sender", fileContent(event.MsgImage, "a.png", "", nil), testMedia(), &ReplyTarget{StanzaID: "X"}, ErrInvalid},
		{"caption too long", fileContent(event.MsgImage, strings.Repeat("a", MaxCaptionBytes+1), "a.png", nil), testMedia(), nil, ErrTextTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := testConverter().MediaToMeta(ctx, tc.content, tc.reply, tc.media); !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
		})
	}
}

func TestMediaTypeOf(t *testing.T) {
	voice := fileContent(event.MsgAudio, "v.ogg", "", nil)
	voice.MSC3245Voice = &event.MSC3245Voice{}
	cases := []struct {
		content *event.MessageEventContent
		want    mediacrypt.MediaType
		voice   bool
	}{
		{fileContent(event.MsgImage, "a", "", nil), mediacrypt.Image, false},
		{fileContent(event.CapMsgSticker, "a", "", nil), mediacrypt.Image, false},
		{fileContent(event.MsgVideo, "a", "", nil), mediacrypt.Video, false},
		{fileContent(event.MsgAudio, "a", "", nil), mediacrypt.Audio, false},
		{voice, mediacrypt.Audio, true},
		{fileContent(event.MsgFile, "a", "", nil), mediacrypt.Document, false},
	}
	for _, tc := range cases {
		got, err := MediaTypeOf(tc.content)
		if err != nil || got != tc.want || IsVoice(tc.content) != tc.voice || !IsMedia(tc.content.MsgType) {
			t.Errorf("%s: got %v %v voice=%v", tc.content.MsgType, got, err, IsVoice(tc.content))
		}
	}
	if IsMedia(event.MsgText) || IsMedia(event.MsgLocation) {
		t.Error("text or location counted as media")
	}
}

// TestMediaVectors builds the vectors' media messages with MediaToMeta and checks the
// bytes. Matrix has no page count, so the document's is set by hand.
func TestMediaVectors(t *testing.T) {
	vectors := loadVectors(t)
	ctx := context.Background()
	media := func(path string, key, fileHash, encHash byte, size uint64, mime string, w, h uint32) *OutgoingMedia {
		return &OutgoingMedia{URL: "https://media.provider.example" + path, DirectPath: path, MediaKey: bytes.Repeat([]byte{key}, 32),
			Result: mediacrypt.Result{FileSHA256: bytes.Repeat([]byte{fileHash}, 32), FileEncSHA256: bytes.Repeat([]byte{encHash}, 32),
				FileLength: size}, Mimetype: mime, Width: w, Height: h, KeyTimestamp: time.Unix(1764000000, 0)}
	}
	voice := fileContent(event.MsgAudio, "Voice message", "", &event.FileInfo{Duration: 3000})
	voice.MSC3245Voice = &event.MSC3245Voice{}
	build := map[string]func() (*waE2E.Message, error){
		"image": func() (*waE2E.Message, error) {
			return testConverter().MediaToMeta(ctx, fileContent(event.MsgImage, "cat", "cat.jpg", nil), nil,
				media("/m/Zm9v", 2, 1, 3, 12345, "image/jpeg", 480, 640))
		},
		"voice_note": func() (*waE2E.Message, error) {
			return testConverter().MediaToMeta(ctx, voice, nil, media("/m/YmFy", 5, 4, 6, 2048, "audio/ogg; codecs=opus", 0, 0))
		},
		"document": func() (*waE2E.Message, error) {
			msg, err := testConverter().MediaToMeta(ctx, fileContent(event.MsgFile, "Q3", "report.pdf", nil), nil,
				media("/m/YmF6", 8, 7, 9, 99999, "application/pdf", 0, 0))
			if err == nil {
				msg.DocumentMessage.PageCount = proto.Uint32(3)
			}
			return msg, err
		},
		"video": func() (*waE2E.Message, error) {
			return testConverter().MediaToMeta(ctx, fileContent(event.MsgVideo, "clip", "clip.mp4", &event.FileInfo{Duration: 12000}), nil,
				media("/m/cXV4", 11, 10, 12, 500000, "video/mp4", 1280, 720))
		},
	}
	for name, fn := range build {
		t.Run(name, func(t *testing.T) {
			want, ok := vectors[name]
			if !ok {
				t.Fatalf("no vector %q", name)
			}
			msg, err := fn()
			if err != nil {
				t.Fatal(err)
			}
			got, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != hex.EncodeToString(want) {
				t.Fatalf("encoding mismatch\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestThumbnail(t *testing.T) {
	encode := func(t *testing.T, w, h int, format string) []byte {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				img.Set(x, y, color.NRGBA{R: 200, G: 30, B: 30, A: 255})
			}
		}
		var buf bytes.Buffer
		var err error
		switch format {
		case "png":
			err = png.Encode(&buf, img)
		case "jpeg":
			err = jpeg.Encode(&buf, img, nil)
		case "gif":
			err = gif.Encode(&buf, img, nil)
		case "transparent":
			err = png.Encode(&buf, image.NewNRGBA(image.Rect(0, 0, w, h)))
		}
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	cases := []struct {
		name         string
		w, h         int
		format       string
		wantW, wantH int
		white        bool
	}{
		{"wide png", 640, 480, "png", 100, 75, false},
		{"tall jpeg", 300, 1200, "jpeg", 25, 100, false},
		{"gif", 150, 150, "gif", 100, 100, false},
		{"small image is not enlarged", 40, 30, "png", 40, 30, false},
		{"thin strip keeps one pixel", 5000, 10, "png", 100, 1, false},
		{"transparent becomes white", 200, 100, "transparent", 100, 50, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			thumb, err := Thumbnail(bytes.NewReader(encode(t, tc.w, tc.h, tc.format)))
			if err != nil {
				t.Fatal(err)
			}
			img, format, err := image.Decode(bytes.NewReader(thumb))
			if err != nil || format != "jpeg" {
				t.Fatalf("thumbnail is not a JPEG: %v %s", err, format)
			}
			if b := img.Bounds(); b.Dx() != tc.wantW || b.Dy() != tc.wantH {
				t.Fatalf("thumbnail is %d×%d, want %d×%d", b.Dx(), b.Dy(), tc.wantW, tc.wantH)
			}
			r, g, _, _ := img.At(tc.wantW/2, tc.wantH/2).RGBA()
			if tc.white && (r>>8 < 240 || g>>8 < 240) || !tc.white && (r>>8 < 150 || g>>8 > 80) {
				t.Fatalf("thumbnail colour r=%d g=%d is not the image's", r>>8, g>>8)
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		if _, err := Thumbnail(bytes.NewReader([]byte("not an image at all"))); err == nil {
			t.Fatal("made a thumbnail of garbage")
		}
		// A header claiming 10000×10000 pixels is refused before decoding.
		if _, err := Thumbnail(bytes.NewReader(pngHeader(10000, 10000))); !errors.Is(err, ErrImageTooLarge) {
			t.Fatalf("got %v, want ErrImageTooLarge", err)
		}
	})
}

// pngHeader is the start of a PNG of the given size: enough for image.DecodeConfig.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 0, 0, 0, 0) // 8-bit grayscale, no interlace
	chunk := append([]byte("IHDR"), ihdr...)
	out := []byte("\x89PNG\r\n\x1a\n")
	out = binary.BigEndian.AppendUint32(out, uint32(len(ihdr)))
	out = append(out, chunk...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
}
