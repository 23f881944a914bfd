package connector

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/mediahost"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
)

// memHost keeps hosted blobs in memory, by message.
type memHost struct {
	lock   sync.Mutex
	blobs  map[string][]byte
	fail   error
	forgot []string
}

func (h *memHost) Host(_ context.Context, network, loginID, messageID string, r io.Reader) (mediahost.HostedBlob, error) {
	if h.fail != nil {
		// Read a little, as a store failing mid-way would.
		_, _ = r.Read(make([]byte, 10))
		return mediahost.HostedBlob{}, h.fail
	}
	blob, err := io.ReadAll(r)
	if err != nil {
		return mediahost.HostedBlob{}, err
	}
	h.lock.Lock()
	defer h.lock.Unlock()
	if h.blobs == nil {
		h.blobs = map[string][]byte{}
	}
	h.blobs[messageID] = blob
	path := "/_interop/v1/media/" + network + "-" + loginID + "-" + messageID
	return mediahost.HostedBlob{URL: "https://bridge.example" + path, DirectPath: path, Size: int64(len(blob))}, nil
}

func (h *memHost) Forget(_ context.Context, _, messageID string) error {
	h.lock.Lock()
	defer h.lock.Unlock()
	delete(h.blobs, messageID)
	h.forgot = append(h.forgot, messageID)
	return nil
}

// memFiles is a homeserver's media repository for downloadFunc: it counts how many
// bytes each download read, to show that limits stop a download early.
type memFiles struct {
	files map[id.ContentURIString][]byte
	read  map[id.ContentURIString]int64
	err   error
}

func (m *memFiles) download(_ context.Context, uri id.ContentURIString, file *event.EncryptedFileInfo, limit int64, dst io.Writer) (int64, error) {
	if file != nil {
		// Stored as plaintext: decryption is matrixDownload's, tested on its own.
		uri = file.URL
	}
	if m.read == nil {
		m.read = map[id.ContentURIString]int64{}
	}
	if m.err != nil {
		return 0, m.err
	}
	data, ok := m.files[uri]
	if !ok {
		return 0, errors.New("404")
	}
	cr := &countingReader{r: bytes.NewReader(data)}
	n, err := copyLimited(dst, cr, limit, nil)
	m.read[uri] += cr.n
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func testPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{R: uint8(x), G: uint8(y), B: 90, A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func outRandom(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// The file of each kind is downloaded, encrypted with its kind's keys into the host
// and described: the blob decrypts to exactly the uploaded bytes.
func TestMediaSenderPrepare(t *testing.T) {
	ctx := context.Background()
	photo := testPNG(t, 640, 480)
	thumbSource := testPNG(t, 320, 180)
	clip := outRandom(t, 300_000)
	voice := outRandom(t, 5000)
	doc := []byte("%PDF-1.4 a small document\n")
	// Only the header of a 5000×4000 PNG: its size is known, decoding it is refused.
	huge := pngHeader(5000, 4000)
	files := &memFiles{files: map[id.ContentURIString][]byte{
		"mxc://hs/photo": photo, "mxc://hs/thumb": thumbSource, "mxc://hs/clip": clip,
		"mxc://hs/voice": voice, "mxc://hs/doc": doc, "mxc://hs/huge": huge,
	}}
	voiceContent := &event.MessageEventContent{MsgType: event.MsgAudio, Body: "Voice message", URL: "mxc://hs/voice",
		Info: &event.FileInfo{MimeType: "audio/ogg", Duration: 2000}, MSC3245Voice: &event.MSC3245Voice{}}
	cases := []struct {
		name      string
		content   *event.MessageEventContent
		plain     []byte
		typ       mediacrypt.MediaType
		mime      string
		w, h      uint32
		thumbnail bool
	}{
		{"image described from its bytes", &event.MessageEventContent{MsgType: event.MsgImage, Body: "photo.png", URL: "mxc://hs/photo"},
			photo, mediacrypt.Image, "image/png", 640, 480, true},
		{"image dimensions from the event", &event.MessageEventContent{MsgType: event.MsgImage, Body: "photo.png", URL: "mxc://hs/photo",
			Info: &event.FileInfo{MimeType: "image/png", Width: 64, Height: 48, Size: len(photo)}},
			photo, mediacrypt.Image, "image/png", 64, 48, true},
		{"image too large to decode uses the event's thumbnail", &event.MessageEventContent{MsgType: event.MsgImage, Body: "huge.png",
			URL: "mxc://hs/huge", Info: &event.FileInfo{ThumbnailURL: "mxc://hs/thumb"}},
			huge, mediacrypt.Image, "image/png", 5000, 4000, true},
		{"image too large to decode uses the homeserver's thumbnail", &event.MessageEventContent{MsgType: event.MsgImage, Body: "huge.png",
			URL: "mxc://hs/huge"}, huge, mediacrypt.Image, "image/png", 5000, 4000, true},
		{"encrypted image is never thumbnailed by the homeserver", &event.MessageEventContent{MsgType: event.MsgImage, Body: "huge.png",
			File: &event.EncryptedFileInfo{URL: "mxc://hs/huge"}}, huge, mediacrypt.Image, "image/png", 5000, 4000, false},
		{"sticker", &event.MessageEventContent{MsgType: event.CapMsgSticker, Body: "smile", URL: "mxc://hs/photo"},
			photo, mediacrypt.Image, "image/png", 640, 480, true},
		{"video with the event's thumbnail", &event.MessageEventContent{MsgType: event.MsgVideo, Body: "clip.mp4", URL: "mxc://hs/clip",
			Info: &event.FileInfo{MimeType: "video/mp4", Width: 1280, Height: 720, Duration: 4000, ThumbnailURL: "mxc://hs/thumb"}},
			clip, mediacrypt.Video, "video/mp4", 1280, 720, true},
		{"video without thumbnail", &event.MessageEventContent{MsgType: event.MsgVideo, Body: "clip.mp4", URL: "mxc://hs/clip",
			Info: &event.FileInfo{MimeType: "video/mp4"}}, clip, mediacrypt.Video, "video/mp4", 0, 0, false},
		{"video whose thumbnail is missing", &event.MessageEventContent{MsgType: event.MsgVideo, Body: "clip.mp4", URL: "mxc://hs/clip",
			Info: &event.FileInfo{MimeType: "video/mp4", ThumbnailURL: "mxc://hs/gone"}}, clip, mediacrypt.Video, "video/mp4", 0, 0, false},
		{"voice message", voiceContent, voice, mediacrypt.Audio, "audio/ogg", 0, 0, false},
		{"document type guessed", &event.MessageEventContent{MsgType: event.MsgFile, Body: "report.pdf", URL: "mxc://hs/doc"},
			doc, mediacrypt.Document, "application/pdf", 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			host := &memHost{}
			s := &mediaSender{host: host, download: files.download, limits: &config.MediaConfig{}, network: "whatsapp",
				networkName: "WhatsApp", loginID: "whatsapp:1-491701234567", tempDir: t.TempDir(),
				serverThumbnail: func(ctx context.Context, uri id.ContentURIString, limit int64, dst io.Writer) (int64, error) {
					if uri != "mxc://hs/huge" {
						return 0, errors.New("no thumbnail of " + string(uri))
					}
					return files.download(ctx, "mxc://hs/thumb", nil, limit, dst)
				}}
			media, err := s.prepare(ctx, tc.content, "STANZA1")
			if err != nil {
				t.Fatal(err)
			}
			if media.Mimetype != tc.mime || media.Width != tc.w || media.Height != tc.h || (media.Thumbnail != nil) != tc.thumbnail {
				t.Fatalf("mime %q %d×%d thumbnail %d bytes", media.Mimetype, media.Width, media.Height, len(media.Thumbnail))
			}
			if tc.thumbnail {
				cfg, format, err := image.DecodeConfig(bytes.NewReader(media.Thumbnail))
				if err != nil || format != "jpeg" || max(cfg.Width, cfg.Height) > msgconv.ThumbnailSide {
					t.Fatalf("thumbnail %v %s %d×%d", err, format, cfg.Width, cfg.Height)
				}
			}
			blob := host.blobs["STANZA1"]
			if !strings.HasSuffix(media.URL, media.DirectPath) || int64(len(blob)) != int64(media.EncLength) {
				t.Fatalf("url %q path %q blob %d bytes, enc length %d", media.URL, media.DirectPath, len(blob), media.EncLength)
			}
			plain, err := mediacrypt.DecryptBytes(blob, mediacrypt.Expected{MediaKey: media.MediaKey, Type: tc.typ,
				FileSHA256: media.FileSHA256, FileEncSHA256: media.FileEncSHA256, FileLength: media.FileLength})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(plain, tc.plain) {
				t.Fatal("the hosted blob does not decrypt to the uploaded file")
			}
		})
	}
}

// Refusals name the file and say why; a file over the limit is refused before the
// download when the event says its size, and after limit+1 bytes when it lies.
func TestMediaSenderRefusals(t *testing.T) {
	ctx := context.Background()
	big := outRandom(t, 3<<20)
	files := &memFiles{files: map[id.ContentURIString][]byte{"mxc://hs/big": big, "mxc://hs/small": big[:1000], "mxc://hs/empty": {}}}
	limits := &config.MediaConfig{MaxSizeMiB: config.MediaSizes{Image: 1, Video: 2, Audio: 1, Document: 2}}
	imageMsg := func(url id.ContentURIString, size int) *event.MessageEventContent {
		return &event.MessageEventContent{MsgType: event.MsgImage, Body: "photo.jpg", URL: url, Info: &event.FileInfo{Size: size}}
	}
	cases := []struct {
		name    string
		content *event.MessageEventContent
		dlErr   error
		hostErr error
		want    string
		certain bool
		reason  event.MessageStatusReason
		maxRead int64 // bytes the download may read; -1 for any
	}{
		{"declared too large", imageMsg("mxc://hs/big", 20<<20), nil, nil,
			"photo.jpg is 20 MiB; WhatsApp users can receive images up to 1 MiB", true, event.MessageStatusUnsupported, 0},
		{"declared too large document", &event.MessageEventContent{MsgType: event.MsgFile, Body: "notes", FileName: "backup.tar",
			URL: "mxc://hs/big", Info: &event.FileInfo{Size: 2<<20 + 512<<10}}, nil, nil,
			"backup.tar is 2.5 MiB; WhatsApp users can receive files up to 2 MiB", true, event.MessageStatusUnsupported, 0},
		{"lying size stops the download", imageMsg("mxc://hs/big", 1000), nil, nil,
			"photo.jpg is larger than 1 MiB; WhatsApp users can receive images up to 1 MiB", true, event.MessageStatusUnsupported, 1<<20 + 64<<10},
		{"no size stops the download", &event.MessageEventContent{MsgType: event.MsgAudio, Body: "song.mp3", URL: "mxc://hs/big"}, nil, nil,
			"song.mp3 is larger than 1 MiB; WhatsApp users can receive audio files up to 1 MiB", true, event.MessageStatusUnsupported, 1<<20 + 64<<10},
		{"empty", imageMsg("mxc://hs/empty", 0), nil, nil, "photo.jpg is empty", true, event.MessageStatusUnsupported, -1},
		{"no url", imageMsg("", 10), nil, nil, "photo.jpg has no file to send", true, event.MessageStatusGenericError, 0},
		{"homeserver fails", imageMsg("mxc://hs/big", 10), errors.New("502 bad gateway"), nil,
			"photo.jpg could not be downloaded from your homeserver; try again", false, "", -1},
		{"damaged", imageMsg("mxc://hs/big", 10), fmt.Errorf("%w: hash mismatch", errMediaDamaged), nil,
			"photo.jpg arrived damaged from your homeserver", true, event.MessageStatusGenericError, -1},
		{"host fails", &event.MessageEventContent{MsgType: event.MsgFile, Body: "a.bin", URL: "mxc://hs/small"}, nil, errors.New("disk full"),
			"a.bin could not be stored for WhatsApp to fetch; try again later", false, "", -1},
		{"text is not media", &event.MessageEventContent{MsgType: event.MsgText, Body: "hi"}, nil, nil,
			"This kind of file cannot be sent", true, event.MessageStatusUnsupported, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files.err, files.read = tc.dlErr, nil
			host := &memHost{fail: tc.hostErr}
			s := &mediaSender{host: host, download: files.download, limits: limits, network: "whatsapp",
				networkName: "WhatsApp", loginID: "whatsapp:1-491701234567", tempDir: t.TempDir()}
			_, err := s.prepare(ctx, tc.content, "STANZA1")
			var ms bridgev2.MessageStatus
			if !errors.As(err, &ms) {
				t.Fatalf("got %v, want a message status", err)
			}
			if !ms.SendNotice || !strings.Contains(ms.Message, tc.want) || ms.IsCertain != tc.certain || (tc.certain && ms.ErrorReason != tc.reason) {
				t.Fatalf("status %+v, want %q", ms, tc.want)
			}
			var read int64
			for _, n := range files.read {
				read += n
			}
			if tc.maxRead >= 0 && read > tc.maxRead {
				t.Fatalf("the download read %d bytes, at most %d expected", read, tc.maxRead)
			}
			if len(host.blobs) != 0 {
				t.Fatal("a refused file left a hosted blob")
			}
		})
	}
}

// An encryption that fails half-way (the file could not be read) reaches the host as
// a read error, so it stores nothing.
func TestMediaSenderEncryptFailureForgets(t *testing.T) {
	host := &memHost{}
	s := &mediaSender{host: host, limits: &config.MediaConfig{}, network: "whatsapp", loginID: "l"}
	media := &msgconv.OutgoingMedia{}
	err := s.encryptAndHost(context.Background(), mediacrypt.Document, io.MultiReader(strings.NewReader("abc"), errReader{}), "S1", media)
	if err == nil || !strings.Contains(err.Error(), "disk gone") || len(host.blobs) != 0 {
		t.Fatalf("err %v, blobs %d", err, len(host.blobs))
	}
}

// errAnyFailure stands for any error in a table.
var errAnyFailure = errors.New("any failure")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk gone") }

// The appservice bot streams a download, stops at the limit whatever the event
// claimed, and decrypts end-to-bridge files, refusing one that does not match its hash.
func TestMatrixDownload(t *testing.T) {
	plain := outRandom(t, 200_000)
	ef := attachment.NewEncryptedFile()
	ciphertext := ef.Encrypt(bytes.Clone(plain))
	damaged := bytes.Clone(ciphertext)
	damaged[100] ^= 1
	served := map[string][]byte{"plain": plain, "enc": ciphertext, "damaged": damaged}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		data, ok := served[strings.TrimSuffix(name, "-chunked")]
		if !strings.HasPrefix(r.URL.Path, "/_matrix/client/v1/media/download/hs/") || !ok {
			http.NotFound(w, r)
			return
		}
		if !strings.HasSuffix(name, "-chunked") {
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		}
		// Chunks, so a download that stops early can be seen.
		for off := 0; off < len(data); off += 16 << 10 {
			if _, err := w.Write(data[off:min(off+16<<10, len(data))]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	client, err := mautrix.NewClient(srv.URL, "@bot:hs", "token")
	if err != nil {
		t.Fatal(err)
	}
	download := matrixDownload(&matrix.ASIntent{Matrix: &appservice.IntentAPI{Client: client}})
	// As a client's event carries it: keys and hash, nothing decoded yet.
	encInfo := func() *event.EncryptedFileInfo {
		raw, err := json.Marshal(ef)
		if err != nil {
			t.Fatal(err)
		}
		info := &event.EncryptedFileInfo{URL: "mxc://hs/enc"}
		if err := json.Unmarshal(raw, &info.EncryptedFile); err != nil {
			t.Fatal(err)
		}
		return info
	}
	damagedInfo := encInfo()
	damagedInfo.URL = "mxc://hs/damaged"
	cases := []struct {
		name  string
		uri   id.ContentURIString
		file  *event.EncryptedFileInfo
		limit int64
		want  error
	}{
		{"plain", "mxc://hs/plain", nil, 1 << 20, nil},
		{"exactly the limit", "mxc://hs/plain", nil, int64(len(plain)), nil},
		{"content length over the limit", "mxc://hs/plain", nil, 1000, errMediaTooLarge},
		{"chunked over the limit", "mxc://hs/plain-chunked", nil, 1000, errMediaTooLarge},
		{"encrypted", "", encInfo(), 1 << 20, nil},
		{"encrypted over the limit", "", encInfo(), 1000, errMediaTooLarge},
		{"encrypted damaged", "", damagedInfo, 1 << 20, errMediaDamaged},
		{"missing", "mxc://hs/nothing", nil, 1 << 20, errAnyFailure},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := download(context.Background(), tc.uri, tc.file, tc.limit, &buf)
			if tc.want != nil {
				if err == nil || (tc.want != errAnyFailure && !errors.Is(err, tc.want)) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				if errors.Is(tc.want, errMediaTooLarge) && int64(buf.Len()) > tc.limit+1 {
					t.Fatalf("wrote %d bytes past a limit of %d", buf.Len(), tc.limit)
				}
				return
			}
			if err != nil || n != int64(len(plain)) || !bytes.Equal(buf.Bytes(), plain) {
				t.Fatalf("got %d bytes, err %v", n, err)
			}
		})
	}
}

// Files whose size bridgev2 cannot check in advance are still limited through
// DownloadMediaToFile (a bot that is not the appservice's).
func TestMatrixDownloadViaFile(t *testing.T) {
	data := outRandom(t, 5000)
	bot := fileBot{data: data}
	for _, tc := range []struct {
		limit int64
		want  error
	}{{5000, nil}, {4999, errMediaTooLarge}} {
		var buf bytes.Buffer
		n, err := matrixDownload(bot)(context.Background(), "mxc://hs/x", nil, tc.limit, &buf)
		if !errors.Is(err, tc.want) || (tc.want == nil && (n != 5000 || !bytes.Equal(buf.Bytes(), data))) {
			t.Fatalf("limit %d: n %d err %v", tc.limit, n, err)
		}
	}
	if _, err := matrixDownload(nil)(context.Background(), "mxc://hs/x", nil, 10, io.Discard); err == nil {
		t.Fatal("a download without a bot succeeded")
	}
}

type fileBot struct {
	bridgev2.MatrixAPI
	data []byte
}

func (b fileBot) DownloadMediaToFile(_ context.Context, _ id.ContentURIString, _ *event.EncryptedFileInfo, _ bool, fn func(*os.File) error) error {
	f, err := os.CreateTemp("", "filebot-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(b.data); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return bridgev2.CallbackError{Type: "read", Wrapped: err}
	}
	return nil
}

// Room features list each kind with the configured limit.
func TestMediaFeatures(t *testing.T) {
	f := &event.RoomFeatures{}
	mediaFeatures(f, &config.MediaConfig{MaxSizeMiB: config.MediaSizes{Image: 5}})
	for capType, want := range map[event.CapabilityMsgType]int64{
		event.MsgImage: 5 << 20, event.CapMsgSticker: 5 << 20, event.MsgVideo: 64 << 20, event.CapMsgGIF: 64 << 20,
		event.MsgAudio: 16 << 20, event.CapMsgVoice: 16 << 20, event.MsgFile: config.MaxProxyPlaintext,
	} {
		ff, ok := f.File[capType]
		if !ok || ff.MaxSize != want {
			t.Errorf("%s: declared %v", capType, ff)
		}
	}
	if !f.File[event.MsgFile].GetMimeSupport("application/x-anything").Full() ||
		!f.File[event.MsgImage].GetMimeSupport("image/jpeg").Full() ||
		f.File[event.MsgImage].GetMimeSupport("video/mp4") != event.CapLevelRejected ||
		!f.File[event.CapMsgVoice].GetMimeSupport("audio/ogg; codecs=opus").Full() {
		t.Error("mimetypes declared wrong")
	}
	if !f.File[event.MsgAudio].Caption.Reject() && f.File[event.MsgAudio].Caption.Partial() {
		t.Error("audio captions declared as sent")
	}
}

// pngHeader is the start of a PNG of the given size: enough for image.DecodeConfig.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA, no interlace
	chunk := append([]byte("IHDR"), ihdr...)
	out := []byte("\x89PNG\r\n\x1a\n")
	out = binary.BigEndian.AppendUint32(out, uint32(len(ihdr)))
	out = append(out, chunk...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(chunk))
}

// The file of a send that may have arrived despite its error stays hosted.
func TestRefusedForSure(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errcode.New(403), true},
		{fmt.Errorf("failed to send: %w", errcode.New(406)), true},
		{interop.ErrNoDevices, true},
		{context.DeadlineExceeded, false},
		{interop.ErrNotConnected, false},
		{errors.New("connection reset"), false},
	} {
		if got := refusedForSure(tc.err); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, got, tc.want)
		}
	}
}

// The homeserver's thumbnail is asked for at the thumbnail size, scaled, through the
// authenticated media API.
func TestMatrixThumbnail(t *testing.T) {
	thumb := testPNG(t, 100, 75)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/_matrix/client/v1/media/thumbnail/hs/pic" || q.Get("width") != "100" || q.Get("height") != "100" ||
			q.Get("method") != "scale" || r.Header.Get("Authorization") != "Bearer token" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(thumb)
	}))
	t.Cleanup(srv.Close)
	client, err := mautrix.NewClient(srv.URL, "@bot:hs", "token")
	if err != nil {
		t.Fatal(err)
	}
	fetch := matrixThumbnail(&matrix.ASIntent{Matrix: &appservice.IntentAPI{Client: client}})
	var buf bytes.Buffer
	if n, err := fetch(context.Background(), "mxc://hs/pic", 1<<20, &buf); err != nil || n != int64(len(thumb)) || !bytes.Equal(buf.Bytes(), thumb) {
		t.Fatalf("got %d bytes, err %v", n, err)
	}
	if _, err := fetch(context.Background(), "mxc://hs/pic", 100, io.Discard); !errors.Is(err, errMediaTooLarge) {
		t.Fatalf("a thumbnail over the limit: %v", err)
	}
	if matrixThumbnail(nil) != nil || matrixThumbnail(fileBot{}) != nil {
		t.Fatal("a thumbnail function without an appservice bot")
	}
}

// A file streams from the homeserver into the host: a document is never spooled to a
// temporary file, and a download that fails after its last byte (an end-to-bridge
// file that does not match its hash) leaves no hosted blob, because the encryption
// sees the end of the file only after the download's checks passed.
func TestMediaSenderStreams(t *testing.T) {
	data := outRandom(t, 300_000)
	cases := []struct {
		name    string
		failEnd error
		want    string
	}{
		{"whole file", nil, ""},
		{"damaged after the last byte", fmt.Errorf("%w: hash mismatch", errMediaDamaged), "arrived damaged"},
		{"broken off after the last byte", errors.New("connection reset"), "could not be downloaded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			host := &memHost{}
			var spooled []os.DirEntry
			download := func(_ context.Context, _ id.ContentURIString, _ *event.EncryptedFileInfo, limit int64, dst io.Writer) (int64, error) {
				n, err := copyLimited(dst, bytes.NewReader(data), limit, nil)
				spooled, _ = os.ReadDir(dir)
				if err != nil {
					return n, err
				}
				return n, tc.failEnd
			}
			s := &mediaSender{host: host, download: download, limits: &config.MediaConfig{}, network: "whatsapp",
				networkName: "WhatsApp", loginID: "l", tempDir: dir}
			content := &event.MessageEventContent{MsgType: event.MsgFile, Body: "a.bin", URL: "mxc://hs/a"}
			media, err := s.prepare(context.Background(), content, "S1")
			if len(spooled) != 0 {
				t.Fatalf("a document was spooled to %d temporary files", len(spooled))
			}
			if tc.want != "" {
				var ms bridgev2.MessageStatus
				if !errors.As(err, &ms) || !strings.Contains(ms.Message, tc.want) {
					t.Fatalf("got %v, want a status saying %q", err, tc.want)
				}
				if len(host.blobs) != 0 {
					t.Fatal("a failed download left a hosted blob")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			plain, err := mediacrypt.DecryptBytes(host.blobs["S1"], mediacrypt.Expected{MediaKey: media.MediaKey, Type: mediacrypt.Document,
				FileSHA256: media.FileSHA256, FileEncSHA256: media.FileEncSHA256, FileLength: media.FileLength})
			if err != nil || !bytes.Equal(plain, data) {
				t.Fatalf("the hosted blob does not decrypt to the file: %v", err)
			}
			if media.Mimetype != "application/octet-stream" {
				t.Fatalf("mimetype %q sniffed from random bytes", media.Mimetype)
			}
		})
	}
}
