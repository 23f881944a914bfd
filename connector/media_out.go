package connector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/mediahost"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

var _ mediaHost = (*mediahost.Hosting)(nil)

// mediaHost is what sending media needs of the media host (mediahost.Hosting).
type mediaHost interface {
	Host(ctx context.Context, network, loginID, messageID string, r io.Reader) (mediahost.HostedBlob, error)
	Forget(ctx context.Context, loginID, messageID string) error
}

// downloadFunc writes the plaintext of a Matrix file (decrypted when file is set) to
// dst and returns how many bytes it wrote. It stops with errMediaTooLarge as soon as
// the file turns out to be longer than limit, whatever its event claimed.
type downloadFunc func(ctx context.Context, uri id.ContentURIString, file *event.EncryptedFileInfo, limit int64, dst io.Writer) (int64, error)

// thumbnailFunc writes the homeserver's thumbnail of an image (at least
// msgconv.ThumbnailSide pixels a side where the image has them) to dst, at most limit
// bytes.
type thumbnailFunc func(ctx context.Context, uri id.ContentURIString, limit int64, dst io.Writer) (int64, error)

var (
	// errMediaTooLarge: the file is over the configured limit of its kind.
	errMediaTooLarge = errors.New("file is larger than allowed")
	// errMediaDamaged: an end-to-bridge encrypted file did not match its hash.
	errMediaDamaged = errors.New("file does not match its hash")
	// errMediaEmpty: the file has no bytes; WhatsApp has no empty media.
	errMediaEmpty = errors.New("file is empty")
)

// mediaThumbnailLimit bounds the thumbnail an event names: a thumbnail over 2 MiB is
// not a thumbnail, and it is read into memory.
const mediaThumbnailLimit = 2 << 20

// mediaTimeout bounds downloading, encrypting and hosting one file.
const mediaTimeout = 10 * time.Minute

// mediaSender prepares the files of outgoing media messages: it downloads them from
// the homeserver, checks their size, encrypts them with a fresh media key and hosts
// the blob for Meta's proxy.
type mediaSender struct {
	host     mediaHost
	download downloadFunc
	// serverThumbnail fetches the homeserver's thumbnail of an unencrypted image; nil
	// when there is no homeserver to ask.
	serverThumbnail thumbnailFunc
	limits          *config.MediaConfig
	// network names the network in the media host ("whatsapp"); networkName in
	// notices ("WhatsApp").
	network, networkName string
	loginID              string
	// tempDir holds a copy of an image while it is encrypted, to read its size and
	// thumbnail from; "" is os.TempDir.
	tempDir string
}

// mediaKindOf is the config kind whose size limit applies to a media type.
func mediaKindOf(t mediacrypt.MediaType) string {
	switch t {
	case mediacrypt.Image:
		return config.MediaImage
	case mediacrypt.Video:
		return config.MediaVideo
	case mediacrypt.Audio:
		return config.MediaAudio
	}
	return config.MediaDocument
}

// kindPlural names a kind's files in notices.
func kindPlural(kind string) string {
	switch kind {
	case config.MediaImage:
		return "images"
	case config.MediaVideo:
		return "videos"
	case config.MediaAudio:
		return "audio files"
	}
	return "files"
}

// formatSize is a size as people read it: "20 MiB", "1.5 MiB", "300 KiB".
func formatSize(n int64) string {
	switch {
	case n >= 1<<20:
		if n%(1<<20) == 0 {
			return fmt.Sprintf("%d MiB", n>>20)
		}
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", (n+1<<9)>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// tooLarge is the refusal of a file over its kind's limit; size is what is known of
// it (over is true when only "more than limit" is known).
func (s *mediaSender) tooLarge(name, kind string, size int64, over bool) error {
	limit := s.limits.MaxBytes(kind)
	is := formatSize(size)
	if over {
		is = "larger than " + formatSize(limit)
	}
	return refuse(fmt.Errorf("%w: %d bytes over a limit of %d", errMediaTooLarge, size, limit), event.MessageStatusUnsupported,
		fmt.Sprintf("%s is %s; %s users can receive %s up to %s", name, is, s.networkName, kindPlural(kind), formatSize(limit)))
}

// prepare downloads, checks, encrypts and hosts the file of content for the message
// that will be sent with stanzaID. Its errors are statuses for the sender.
func (s *mediaSender) prepare(ctx context.Context, content *event.MessageEventContent, stanzaID string) (*msgconv.OutgoingMedia, error) {
	t, err := msgconv.MediaTypeOf(content)
	if err != nil {
		return nil, refuse(err, event.MessageStatusUnsupported, "This kind of file cannot be sent to WhatsApp and Messenger")
	}
	name := msgconv.DocumentFileName(content)
	kind := mediaKindOf(t)
	limit := s.limits.MaxBytes(kind)
	if content.Info != nil && int64(content.Info.Size) > limit {
		return nil, s.tooLarge(name, kind, int64(content.Info.Size), false)
	}
	if content.URL == "" && content.File == nil {
		return nil, refuse(fmt.Errorf("%w: no file URL", msgconv.ErrInvalid), event.MessageStatusGenericError,
			fmt.Sprintf("%s has no file to send", name))
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, mediaTimeout)
	defer cancel()

	// Only an image is read again (its size and thumbnail), so only an image is
	// spooled to a temporary file on the way; every file streams from the homeserver
	// through the size limit and the encryption into the media host in one pass.
	var spool *os.File
	if t == mediacrypt.Image {
		spool, err = os.CreateTemp(s.tempDir, "metainterop-out-*")
		if err != nil {
			return nil, bridgev2.WrapErrorInStatus(fmt.Errorf("failed to create a temporary file: %w", err)).WithSendNotice(true).
				WithMessage(fmt.Sprintf("%s could not be prepared for sending (the bridge could not write a temporary file)", name))
		}
		defer func() {
			_ = spool.Close()
			_ = os.Remove(spool.Name())
		}()
	}
	media := &msgconv.OutgoingMedia{KeyTimestamp: time.Now()}
	head, size, dlErr, hostErr := s.downloadAndHost(ctx, content, t, limit, spool, stanzaID, media)
	switch {
	case errors.Is(dlErr, errMediaTooLarge):
		return nil, s.tooLarge(name, kind, size, true)
	case errors.Is(dlErr, errMediaDamaged):
		return nil, refuse(dlErr, event.MessageStatusGenericError,
			fmt.Sprintf("%s arrived damaged from your homeserver (it does not match its hash); send it again", name))
	case errors.Is(dlErr, errMediaEmpty):
		return nil, refuse(errMediaEmpty, event.MessageStatusUnsupported, fmt.Sprintf("%s is empty; empty files cannot be sent", name))
	case errors.Is(dlErr, errSpoolWrite):
		return nil, bridgev2.WrapErrorInStatus(dlErr).WithSendNotice(true).
			WithMessage(fmt.Sprintf("%s could not be prepared for sending (the bridge could not write a temporary file)", name))
	case dlErr != nil:
		return nil, bridgev2.WrapErrorInStatus(fmt.Errorf("failed to download the file: %w", dlErr)).WithSendNotice(true).
			WithMessage(fmt.Sprintf("%s could not be downloaded from your homeserver; try again", name))
	case hostErr != nil:
		return nil, bridgev2.WrapErrorInStatus(hostErr).WithSendNotice(true).
			WithMessage(fmt.Sprintf("%s could not be stored for %s to fetch; try again later", name, s.networkName))
	}
	media.Mimetype = s.mimetype(content, head)
	s.describe(ctx, content, t, spool, media)
	zerolog.Ctx(ctx).Debug().Stringer("media_type", t).Str("message_id", stanzaID).
		Uint64("file_length", media.FileLength).Uint64("blob_length", media.EncLength).
		Bool("thumbnail", media.Thumbnail != nil).Dur("took", time.Since(start)).Msg("Hosted the encrypted file of an outgoing message")
	return media, nil
}

// errStreamStopped ends a download whose encryption or hosting failed first.
var errStreamStopped = errors.New("the encryption stopped reading the file")

// errSpoolWrite marks a failure to write the temporary copy of an image.
var errSpoolWrite = errors.New("failed to write the temporary file")

// downloadAndHost streams the file of content from the homeserver through the size
// limit and the encryption into the media host, copying it to spool on the way when
// spool is set. head is the file's first bytes, size what the download read.
//
// The encryption sees the end of the file only once the download has ended without
// error, that is after the limit and an end-to-bridge file's hash were checked; until
// then the host holds an unfinished blob, which it deletes when the stream fails. So
// dlErr (the download's failure, with errMediaEmpty for an empty file) comes first;
// hostErr is the encryption's or the host's own failure.
func (s *mediaSender) downloadAndHost(ctx context.Context, content *event.MessageEventContent, t mediacrypt.MediaType,
	limit int64, spool *os.File, stanzaID string, media *msgconv.OutgoingMedia) (head []byte, size int64, dlErr, hostErr error) {
	pr, pw := io.Pipe()
	sniff := &headWriter{}
	dst := io.MultiWriter(sniff, pw)
	if spool != nil {
		dst = io.MultiWriter(sniff, spoolWriter{spool}, pw)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		size, dlErr = s.download(ctx, content.URL, content.File, limit, dst)
		if dlErr == nil && size == 0 {
			dlErr = errMediaEmpty
		}
		// nil closes the pipe with EOF: only a whole, checked file ends the blob.
		pw.CloseWithError(dlErr)
	}()
	hostErr = s.encryptAndHost(ctx, t, pr, stanzaID, media)
	// Unblocks the download if the encryption stopped reading early.
	pr.CloseWithError(errStreamStopped)
	<-done
	if errors.Is(dlErr, errStreamStopped) {
		dlErr = nil
		if hostErr == nil {
			hostErr = errStreamStopped
		}
	}
	if dlErr != nil && hostErr == nil {
		// Cannot happen: a failed download fails the encryption. Never keep its blob.
		s.forget(ctx, stanzaID)
	}
	return sniff.buf, size, dlErr, hostErr
}

// headWriter keeps the first bytes written to it, for sniffing the file's type.
type headWriter struct{ buf []byte }

func (h *headWriter) Write(p []byte) (int, error) {
	if room := 512 - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// spoolWriter tells temporary file failures apart from the download's.
type spoolWriter struct{ f *os.File }

func (w spoolWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		return n, fmt.Errorf("%w: %w", errSpoolWrite, err)
	}
	return n, nil
}

// mimetype is the event's type for the file, or one guessed from its first bytes.
func (s *mediaSender) mimetype(content *event.MessageEventContent, head []byte) string {
	if content.Info != nil && content.Info.MimeType != "" {
		return content.Info.MimeType
	}
	if len(head) == 0 {
		return ""
	}
	return http.DetectContentType(head)
}

// describe fills in the dimensions and thumbnail: from the event, or read from the
// image itself (f, the image's temporary copy; nil for other kinds). None of it is
// required, so failures only leave fields empty.
func (s *mediaSender) describe(ctx context.Context, content *event.MessageEventContent, t mediacrypt.MediaType, f *os.File, media *msgconv.OutgoingMedia) {
	if info := content.Info; info != nil && info.Width > 0 && info.Height > 0 {
		media.Width, media.Height = uint32(info.Width), uint32(info.Height)
	}
	if t == mediacrypt.Audio {
		return
	}
	if t == mediacrypt.Image && f != nil && (media.Width == 0 || media.Height == 0) {
		if _, err := f.Seek(0, io.SeekStart); err == nil {
			if w, h, err := msgconv.ImageSize(f); err == nil {
				media.Width, media.Height = uint32(w), uint32(h)
			}
		}
	}
	media.Thumbnail = s.thumbnail(ctx, content, t, f)
}

// thumbnail tries, in order: the image itself (when small enough to decode), the
// thumbnail the event names, and for an unencrypted image the homeserver's own
// thumbnail of it. nil when none works.
func (s *mediaSender) thumbnail(ctx context.Context, content *event.MessageEventContent, t mediacrypt.MediaType, f *os.File) []byte {
	log := zerolog.Ctx(ctx)
	if t == mediacrypt.Image && f != nil {
		if _, err := f.Seek(0, io.SeekStart); err == nil {
			thumb, err := msgconv.Thumbnail(f)
			if err == nil {
				return thumb
			}
			log.Debug().Err(err).Msg("Failed to make a thumbnail of the image itself")
		}
	}
	fromDownload := func(what string, fetch func(dst io.Writer) error) []byte {
		var buf bytes.Buffer
		if err := fetch(&buf); err != nil {
			log.Debug().Err(err).Str("source", what).Msg("Failed to download a thumbnail")
			return nil
		}
		thumb, err := msgconv.Thumbnail(bytes.NewReader(buf.Bytes()))
		if err != nil {
			log.Debug().Err(err).Str("source", what).Msg("Failed to make a thumbnail")
			return nil
		}
		return thumb
	}
	if info := content.Info; info != nil && (info.ThumbnailURL != "" || info.ThumbnailFile != nil) {
		thumb := fromDownload("the event's thumbnail", func(dst io.Writer) error {
			_, err := s.download(ctx, info.ThumbnailURL, info.ThumbnailFile, mediaThumbnailLimit, dst)
			return err
		})
		if thumb != nil {
			return thumb
		}
	}
	// The homeserver only sees ciphertext of an encrypted file.
	if t == mediacrypt.Image && content.File == nil && content.URL != "" && s.serverThumbnail != nil {
		return fromDownload("the homeserver's thumbnail", func(dst io.Writer) error {
			_, err := s.serverThumbnail(ctx, content.URL, mediaThumbnailLimit, dst)
			return err
		})
	}
	return nil
}

// encryptAndHost encrypts the plaintext from src with a fresh media key straight into
// the media host, and fills in where the blob is served and what the message carries.
func (s *mediaSender) encryptAndHost(ctx context.Context, t mediacrypt.MediaType, src io.Reader, stanzaID string, media *msgconv.OutgoingMedia) error {
	key, err := mediacrypt.NewMediaKey()
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	type result struct {
		res mediacrypt.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := mediacrypt.Encrypt(pw, src, key, t)
		// nil closes the pipe with EOF: the host sees the end of the blob.
		pw.CloseWithError(err)
		done <- result{res, err}
	}()
	blob, hostErr := s.host.Host(ctx, s.network, s.loginID, stanzaID, pr)
	// Unblocks the encryption if the host stopped reading early.
	pr.CloseWithError(errors.New("the media host stopped reading"))
	enc := <-done
	if hostErr != nil {
		// The host stores nothing when it fails, whether its own write or the
		// encryption (a read error to it) failed.
		return fmt.Errorf("failed to host the encrypted file: %w", hostErr)
	}
	if enc.err == nil && blob.Size != int64(enc.res.EncLength) {
		enc.err = fmt.Errorf("the media host stored %d bytes of a %d-byte blob", blob.Size, enc.res.EncLength)
	}
	if enc.err != nil {
		s.forget(ctx, stanzaID)
		return fmt.Errorf("failed to encrypt the file: %w", enc.err)
	}
	media.URL, media.DirectPath, media.MediaKey, media.Result = blob.URL, blob.DirectPath, key, enc.res
	return nil
}

// forget deletes the hosted blobs of a message that was not sent or was revoked.
func (s *mediaSender) forget(ctx context.Context, stanzaID string) {
	if err := s.host.Forget(ctx, s.loginID, stanzaID); err != nil {
		zerolog.Ctx(ctx).Err(err).Str("message_id", stanzaID).Msg("Failed to delete hosted media")
	}
}

// mediaSender is this login's sender of media, or a refusal when the bridge hosts no
// media.
func (ic *InteropClient) mediaSender() (*mediaSender, error) {
	if ic.Main.Media == nil {
		return nil, refuse(errors.New("media hosting is not set up"), event.MessageStatusUnsupported,
			"This bridge cannot send files yet: its media hosting is not set up")
	}
	var bot bridgev2.MatrixAPI
	if ic.Main.Bridge != nil {
		bot = ic.Main.Bridge.Bot
	}
	return &mediaSender{
		host:            ic.Main.Media,
		download:        matrixDownload(bot),
		serverThumbnail: matrixThumbnail(bot),
		limits:          &ic.Main.Config.Media,
		network:         string(ic.Network),
		networkName:     networkDisplayName(ic.Main, ic.Network),
		loginID:         string(ic.UserLogin.ID),
	}, nil
}

// mediaMessage prepares the file of a Matrix media message and converts it; the blob
// is hosted under stanzaID, which the message must be sent with.
func (ic *InteropClient) mediaMessage(ctx context.Context, msg *bridgev2.MatrixMessage, stanzaID string) (*waE2E.Message, *mediaSender, error) {
	sender, err := ic.mediaSender()
	if err != nil {
		return nil, nil, err
	}
	media, err := sender.prepare(ctx, msg.Content, stanzaID)
	if err != nil {
		return nil, nil, err
	}
	out, err := ic.converter().MediaToMeta(ctx, msg.Content, ic.replyTarget(ctx, msg.Portal, msg.ReplyTo), media)
	if err != nil {
		sender.forget(ctx, stanzaID)
		if errors.Is(err, msgconv.ErrTextTooLong) {
			return nil, nil, refuse(err, event.MessageStatusUnsupported, "The caption is longer than WhatsApp allows")
		}
		return nil, nil, refuse(err, event.MessageStatusUnsupported, "This file cannot be sent to WhatsApp and Messenger")
	}
	return out, sender, nil
}

// forgetMedia deletes the hosted blobs of a revoked message of this login.
func (ic *InteropClient) forgetMedia(ctx context.Context, stanzaID string) {
	if ic.Main.Media == nil {
		return
	}
	if err := ic.Main.Media.Forget(ctx, string(ic.UserLogin.ID), stanzaID); err != nil {
		zerolog.Ctx(ctx).Err(err).Str("message_id", stanzaID).Msg("Failed to delete the hosted media of a revoked message")
	}
}

// matrixDownload downloads Matrix files through bot. The appservice bot streams with
// the limit applied while reading; another MatrixAPI (tests) goes through
// DownloadMediaToFile and is checked once the file is whole.
func matrixDownload(bot bridgev2.MatrixAPI) downloadFunc {
	return func(ctx context.Context, uri id.ContentURIString, file *event.EncryptedFileInfo, limit int64, dst io.Writer) (int64, error) {
		if bot == nil {
			return 0, errors.New("the bridge has no Matrix bot to download with")
		}
		as := appserviceIntent(bot)
		if as == nil {
			return downloadViaFile(ctx, bot, uri, file, limit, dst)
		}
		if file != nil {
			uri = file.URL
			if err := file.PrepareForDecryption(); err != nil {
				return 0, fmt.Errorf("failed to read the file's keys: %w", err)
			}
		}
		parsed, err := uri.Parse()
		if err != nil {
			return 0, fmt.Errorf("failed to parse the file URL: %w", err)
		}
		resp, err := as.Matrix.Download(ctx, parsed)
		if err != nil {
			return 0, fmt.Errorf("failed to download the file: %w", err)
		}
		defer resp.Body.Close()
		if resp.ContentLength > limit {
			return resp.ContentLength, errMediaTooLarge
		}
		var src io.Reader = resp.Body
		var decrypted io.Closer
		if file != nil {
			dec := file.DecryptStream(resp.Body)
			src, decrypted = dec, dec
		}
		return copyLimited(dst, src, limit, decrypted)
	}
}

// appserviceIntent is the mautrix appservice intent behind bot, nil for another
// MatrixAPI.
func appserviceIntent(bot bridgev2.MatrixAPI) *matrix.ASIntent {
	var as *matrix.ASIntent
	switch b := bot.(type) {
	case *matrix.ASIntent:
		as = b
	case *idempotentIntent:
		as = b.ASIntent
	}
	if as == nil || as.Matrix == nil {
		return nil
	}
	return as
}

// matrixThumbnail asks the homeserver for a thumbnail through the appservice bot;
// nil without one.
func matrixThumbnail(bot bridgev2.MatrixAPI) thumbnailFunc {
	as := appserviceIntent(bot)
	if as == nil {
		return nil
	}
	return func(ctx context.Context, uri id.ContentURIString, limit int64, dst io.Writer) (int64, error) {
		parsed, err := uri.Parse()
		if err != nil {
			return 0, fmt.Errorf("failed to parse the file URL: %w", err)
		}
		resp, err := as.Matrix.DownloadThumbnail(ctx, parsed, msgconv.ThumbnailSide, msgconv.ThumbnailSide,
			mautrix.DownloadThumbnailExtra{Method: "scale"})
		if err != nil {
			return 0, fmt.Errorf("failed to download the thumbnail: %w", err)
		}
		defer resp.Body.Close()
		return copyLimited(dst, resp.Body, limit, nil)
	}
}

// copyBufferSize is the size of a download's reads: a few hundred per 100 MiB instead
// of io.Copy's 3200, each one a hand-over to the encryption.
const copyBufferSize = 256 << 10

// copyLimited copies at most limit bytes and fails with errMediaTooLarge when there are
// more. check, when set, is closed at the end to verify what was read.
func copyLimited(dst io.Writer, src io.Reader, limit int64, check io.Closer) (int64, error) {
	bufSize := int64(copyBufferSize)
	if limit < bufSize {
		bufSize = limit + 1
	}
	n, err := io.CopyBuffer(dst, io.LimitReader(src, limit+1), make([]byte, bufSize))
	if err != nil {
		return n, fmt.Errorf("failed to read the file: %w", err)
	}
	if n > limit {
		return n, errMediaTooLarge
	}
	if check != nil {
		if err := check.Close(); err != nil {
			return n, fmt.Errorf("%w: %w", errMediaDamaged, err)
		}
	}
	return n, nil
}

func downloadViaFile(ctx context.Context, bot bridgev2.MatrixAPI, uri id.ContentURIString, file *event.EncryptedFileInfo, limit int64, dst io.Writer) (int64, error) {
	var n int64
	err := bot.DownloadMediaToFile(ctx, uri, file, false, func(f *os.File) error {
		var err error
		n, err = copyLimited(dst, f, limit, nil)
		return err
	})
	if err != nil && !errors.Is(err, errMediaTooLarge) {
		return n, fmt.Errorf("failed to download the file: %w", err)
	}
	return n, err
}
