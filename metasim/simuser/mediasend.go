package simuser

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// Defaults of generated media.
const (
	defaultMediaSize   = 4096
	defaultImageWidth  = 64
	defaultImageHeight = 48
	maxGeneratedSize   = 100 << 20
)

// SentMedia describes the blob of a sent media message.
type SentMedia struct {
	DirectPath string `json:"direct_path"`
	URL        string `json:"url,omitempty"`
	Mimetype   string `json:"mimetype"`
	// SHA256 (hex) and Size are of the plaintext, for comparing with what arrives.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// EncSHA256 (hex) is fileEncSha256 of the uploaded blob.
	EncSHA256 string `json:"enc_sha256"`
}

func mediaTypeOf(k ContentKind) mediacrypt.MediaType {
	switch k {
	case ContentImage:
		return mediacrypt.Image
	case ContentVideo:
		return mediacrypt.Video
	case ContentAudio, ContentVoice:
		return mediacrypt.Audio
	case ContentDocument:
		return mediacrypt.Document
	}
	return 0
}

// plaintext returns the media's bytes and mimetype, generating them when not given.
func (c *Content) plaintext() ([]byte, string, error) {
	spec := c.Media
	data, mime := spec.Data, spec.Mimetype
	if data == nil {
		switch {
		case spec.Size < 0 || spec.Size > maxGeneratedSize:
			return nil, "", fmt.Errorf("%w: generated media size %d out of range", ErrBadContent, spec.Size)
		case c.Kind == ContentImage:
			w, h := spec.Width, spec.Height
			if w == 0 || h == 0 {
				w, h = defaultImageWidth, defaultImageHeight
				spec.Width, spec.Height = w, h
			}
			img, err := generatePNG(int(w), int(h))
			if err != nil {
				return nil, "", err
			}
			data = img
			if mime == "" {
				mime = "image/png"
			}
		default:
			n := spec.Size
			if n == 0 {
				n = defaultMediaSize
			}
			data = make([]byte, n)
			if _, err := rand.Read(data); err != nil {
				return nil, "", fmt.Errorf("failed to generate media: %w", err)
			}
		}
	}
	if mime == "" {
		mime = defaultMimetype(c.Kind, data)
	}
	return data, mime, nil
}

func defaultMimetype(k ContentKind, data []byte) string {
	switch k {
	case ContentImage:
		return http.DetectContentType(data)
	case ContentVideo:
		return "video/mp4"
	case ContentVoice:
		return "audio/ogg; codecs=opus"
	case ContentAudio:
		return "audio/mpeg"
	}
	return "application/octet-stream"
}

// generatePNG draws a w×h gradient with random colours: a real image, different every
// time, so receivers that decode images can.
func generatePNG(w, h int) ([]byte, error) {
	if w <= 0 || h <= 0 || w > 4096 || h > 4096 {
		return nil, fmt.Errorf("%w: image size %dx%d", ErrBadContent, w, h)
	}
	var seed [3]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("failed to generate image: %w", err)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{R: seed[0] + uint8(x), G: seed[1] + uint8(y), B: seed[2] + uint8(x^y), A: 0xff})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("failed to encode image: %w", err)
	}
	return buf.Bytes(), nil
}

// buildMedia encrypts the media (section 7), uploads the blob to Meta's media hosts
// and builds the message with every field a receiver needs.
func (m *Manager) buildMedia(ctx context.Context, c *Content, now time.Time) (*waE2E.Message, *SentMedia, error) {
	if m.cfg.Media == nil {
		return nil, nil, ErrNoMediaHost
	}
	if c.Media == nil {
		c.Media = &MediaSpec{}
	}
	spec := *c.Media
	cc := *c
	cc.Media = &spec
	plain, mime, err := cc.plaintext()
	if err != nil {
		return nil, nil, err
	}
	key, err := mediacrypt.NewMediaKey()
	if err != nil {
		return nil, nil, err
	}
	pr, pw := io.Pipe()
	encDone := make(chan struct{})
	var res mediacrypt.Result
	var encErr error
	go func() {
		defer close(encDone)
		res, encErr = mediacrypt.Encrypt(pw, bytes.NewReader(plain), key, mediaTypeOf(c.Kind))
		pw.CloseWithError(encErr)
	}()
	directPath, err := m.cfg.Media.Upload(ctx, pr)
	_ = pr.CloseWithError(io.ErrClosedPipe)
	<-encDone
	if encErr != nil {
		return nil, nil, fmt.Errorf("failed to encrypt media: %w", encErr)
	} else if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(plain)
	sent := &SentMedia{DirectPath: directPath, URL: m.cfg.Media.URL(directPath), Mimetype: mime,
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(plain)), EncSHA256: hex.EncodeToString(res.FileEncSHA256)}
	var url *string
	if sent.URL != "" {
		url = proto.String(sent.URL)
	}
	ts := proto.Int64(now.Unix())
	ci := cc.contextInfo()
	caption := func() *string {
		if cc.Text == "" {
			return nil
		}
		return proto.String(cc.Text)
	}
	opt32 := func(v uint32) *uint32 {
		if v == 0 {
			return nil
		}
		return proto.Uint32(v)
	}
	msg := &waE2E.Message{}
	switch c.Kind {
	case ContentImage:
		msg.ImageMessage = &waE2E.ImageMessage{Url: url, Mimetype: proto.String(mime), Caption: caption(),
			FileSha256: res.FileSHA256, FileLength: proto.Uint64(res.FileLength), Height: opt32(spec.Height),
			Width: opt32(spec.Width), MediaKey: key, FileEncSha256: res.FileEncSHA256, DirectPath: proto.String(directPath),
			MediaKeyTimestamp: ts, ContextInfo: ci}
	case ContentVideo:
		msg.VideoMessage = &waE2E.VideoMessage{Url: url, Mimetype: proto.String(mime), FileSha256: res.FileSHA256,
			FileLength: proto.Uint64(res.FileLength), Seconds: opt32(spec.Seconds), MediaKey: key, Caption: caption(),
			Height: opt32(spec.Height), Width: opt32(spec.Width), FileEncSha256: res.FileEncSHA256,
			DirectPath: proto.String(directPath), MediaKeyTimestamp: ts, ContextInfo: ci}
	case ContentAudio, ContentVoice:
		msg.AudioMessage = &waE2E.AudioMessage{Url: url, Mimetype: proto.String(mime), FileSha256: res.FileSHA256,
			FileLength: proto.Uint64(res.FileLength), Seconds: opt32(spec.Seconds), Ptt: proto.Bool(c.Kind == ContentVoice),
			MediaKey: key, FileEncSha256: res.FileEncSHA256, DirectPath: proto.String(directPath), MediaKeyTimestamp: ts,
			ContextInfo: ci}
	case ContentDocument:
		name := spec.FileName
		if name == "" {
			name = "document.bin"
		}
		msg.DocumentMessage = &waE2E.DocumentMessage{Url: url, Mimetype: proto.String(mime), FileSha256: res.FileSHA256,
			FileLength: proto.Uint64(res.FileLength), PageCount: opt32(spec.PageCount), MediaKey: key,
			FileName: proto.String(name), FileEncSha256: res.FileEncSHA256, DirectPath: proto.String(directPath),
			MediaKeyTimestamp: ts, ContextInfo: ci, Caption: caption()}
		if spec.Title != "" {
			msg.DocumentMessage.Title = proto.String(spec.Title)
		}
	}
	return msg, sent, nil
}
