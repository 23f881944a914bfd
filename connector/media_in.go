package connector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/msgconv"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
)

// Media from Meta users (PROTOCOL.md section 7): the blob is on Meta's media hosts,
// which media_conn names along with a bearer credential. This file downloads it from
// those hosts only, refuses what is too big before and while reading it, verifies the
// MAC and both hashes (mediacrypt), and uploads the plaintext to the Matrix content
// repository through bridgev2, encrypted for end-to-bridge rooms. Every refusal is a
// msgconv.MediaFailure whose reason the receiver reads in a notice. With direct media
// enabled, unencrypted rooms get a URI instead, and the same fetch runs when the
// homeserver asks for the file (directmedia.go).

// Download defaults.
const (
	defaultMediaAttempts = 4
	defaultMediaBackoff  = 500 * time.Millisecond
	// mediaAttemptTimeout bounds one download; at a slow 256 KiB/s, 100 MiB takes 400 s.
	mediaAttemptTimeout = 10 * time.Minute
)

var (
	_ msgconv.MediaUploader = (*mediaUploader)(nil)
)

// errMediaUnreachable wraps a request to a media host that got no answer.
var errMediaUnreachable = errors.New("media host did not answer")

// errMediaGone wraps the refusal of a blob the media hosts no longer have.
var errMediaGone = errors.New("media is gone from Meta's media hosts")

// mediaConnCache holds one login's media_conn until its TTL, so that a burst of media
// costs one iq, and the HTTP client that downloads from the hosts it names, so that
// downloads reuse connections. The zero value is ready. Safe for concurrent use:
// callers wait for one fetch rather than each sending their own.
type mediaConnCache struct {
	mu     sync.Mutex
	conn   interop.MediaConn
	client *http.Client
}

// httpClient is the login's media download client, made on first use.
func (c *mediaConnCache) httpClient() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = mediaHTTPClient()
	}
	return c.client
}

// get returns the cached media_conn, fetching a new one when there is none, it
// expired, or the caller saw the hosts refuse stale (the auth it was given).
func (c *mediaConnCache) get(ctx context.Context, fetch func(context.Context) (interop.MediaConn, error), now time.Time, stale string) (interop.MediaConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.conn.Expired(now) && (stale == "" || c.conn.Auth != stale) {
		return c.conn, nil
	}
	conn, err := fetch(ctx)
	if err != nil {
		return interop.MediaConn{}, fmt.Errorf("failed to fetch media_conn: %w", err)
	}
	c.conn = conn
	return conn, nil
}

// mediaFetcher downloads and verifies the blob of one incoming attachment.
type mediaFetcher struct {
	conns     *mediaConnCache
	fetchConn func(context.Context) (interop.MediaConn, error)
	client    *http.Client
	// scheme is how the media hosts are reached: https, or http when the gateway
	// itself is plain ws:// (a test deployment such as metasim).
	scheme   string
	maxBytes func(kind string) int64
	tempDir  string // "" means os.TempDir()
	attempts int
	backoff  time.Duration // first delay between attempts, doubling
	now      func() time.Time
	// idleTimeout ends a download that stalls; 0 means mediaIdleTimeout.
	idleTimeout time.Duration
}

func (f *mediaFetcher) idle() time.Duration {
	if f.idleTimeout > 0 {
		return f.idleTimeout
	}
	return mediaIdleTimeout
}

// mediaHTTPClient never follows redirects: a media host may not send the bridge to a
// host media_conn did not name. Its timeouts are short because a download holds up
// the login's other incoming messages: a host that does not answer must fail fast
// enough for the retries to end in seconds, not minutes.
func mediaHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// mediaIdleTimeout ends a download that stopped sending bytes.
const mediaIdleTimeout = 30 * time.Second

// idleReader cancels its download when no byte arrived for timeout.
type idleReader struct {
	r       io.Reader
	timer   *time.Timer
	timeout time.Duration
}

func newIdleReader(r io.Reader, timeout time.Duration, cancel context.CancelFunc) *idleReader {
	return &idleReader{r: r, timer: time.AfterFunc(timeout, cancel), timeout: timeout}
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.timer.Reset(ir.timeout)
	}
	return n, err
}

func (ir *idleReader) stop() { ir.timer.Stop() }

// mediaScheme picks http for a plain ws:// gateway and https otherwise.
func mediaScheme(gatewayURL string) string {
	if u, err := url.Parse(gatewayURL); err == nil && strings.EqualFold(u.Scheme, "ws") {
		return "http"
	}
	return "https"
}

func fail(reason string, err error) *msgconv.MediaFailure {
	return &msgconv.MediaFailure{Reason: reason, Err: err}
}

// fetch returns the verified plaintext in a temporary file positioned at its start;
// the caller closes and removes it. Errors are *msgconv.MediaFailure.
func (f *mediaFetcher) fetch(ctx context.Context, m *msgconv.IncomingMedia) (*os.File, error) {
	kind := m.Type.String()
	limit, err := f.precheck(m)
	if err != nil {
		return nil, err
	}
	exp := mediacrypt.Expected{MediaKey: m.MediaKey, Type: m.Type, FileSHA256: m.FileSHA256,
		FileEncSHA256: m.FileEncSHA256, FileLength: m.FileLength,
		// The largest blob a plaintext of limit bytes encrypts to: padding, then the MAC.
		MaxBlobSize: limit + 16 + mediacrypt.MACLength}
	attempts := max(f.attempts, 1)
	delay := f.backoff
	var stale string
	refreshed := false
	var lastErr error
	lastReason := "Meta's media hosts could not be reached"
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 && delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, fail("the bridge stopped while downloading it", ctx.Err())
			}
			delay *= 2
		}
		conn, err := f.conns.get(ctx, f.fetchConn, f.now(), stale)
		if err != nil {
			if _, retry := interop.RetryDelay(err, &interop.Backoff{}); retry && ctx.Err() == nil {
				lastErr, lastReason = err, "the bridge could not get download credentials from Meta"
				continue
			}
			return nil, fail("the bridge could not get download credentials from Meta", err)
		}
		stale = ""
		target, err := mediaURL(f.scheme, m, conn.Hosts, attempt)
		if err != nil {
			return nil, err
		}
		file, status, err := f.download(ctx, target, conn.Auth, exp)
		switch {
		case err == nil:
			if m.FileLength == 0 {
				if st, serr := file.Stat(); serr == nil && st.Size() > limit {
					_ = file.Close()
					_ = os.Remove(file.Name())
					return nil, fail(fmt.Sprintf("it is %s, over this bridge's limit of %s for %s files",
						humanBytes(st.Size()), humanBytes(limit), kind), nil)
				}
			}
			return file, nil
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			if refreshed {
				return nil, fail("Meta's media hosts refused the bridge's download credentials", err)
			}
			// The credentials may have been revoked before their TTL: ask once more.
			refreshed, stale = true, conn.Auth
			attempt--
			delay = 0
			continue
		case status == http.StatusNotFound || status == http.StatusGone:
			return nil, fail("it is no longer on Meta's media hosts", fmt.Errorf("%w: %w", errMediaGone, err))
		case status == http.StatusTooManyRequests || status >= 500:
			lastErr, lastReason = err, fmt.Sprintf("Meta's media hosts kept failing (HTTP %d)", status)
			delay = max(delay, f.backoff)
			continue
		case status != 0:
			return nil, fail(fmt.Sprintf("Meta's media hosts refused it (HTTP %d)", status), err)
		}
		if reason, refused := verifyFailure(err, limit, kind); refused {
			return nil, fail(reason, err)
		}
		if ctx.Err() != nil {
			return nil, fail("the bridge stopped while downloading it", ctx.Err())
		}
		// A network error, or a download that broke off: try again, on another host
		// if there is one.
		lastErr, lastReason = err, "the download from Meta's media hosts kept breaking off"
		if errors.Is(err, errMediaUnreachable) {
			lastReason = "Meta's media hosts could not be reached"
		}
		delay = max(delay, f.backoff)
	}
	return nil, fail(fmt.Sprintf("%s (%d attempts)", lastReason, attempts), lastErr)
}

// precheck refuses, before any download, what the message itself shows cannot be
// bridged: a kind the bridge does not accept, a declared size over the limit, missing
// keys. It returns the size limit for the kind.
func (f *mediaFetcher) precheck(m *msgconv.IncomingMedia) (int64, error) {
	kind := m.Type.String()
	limit := f.maxBytes(kind)
	if limit <= 0 {
		return 0, fail("this bridge does not accept "+kind+" files", nil)
	}
	if m.FileLength > uint64(limit) {
		return 0, fail(fmt.Sprintf("it is %s, over this bridge's limit of %s for %s files",
			humanBytes(int64(min(m.FileLength, 1<<62))), humanBytes(limit), kind), nil)
	}
	if len(m.MediaKey) != mediacrypt.MediaKeyLength || len(m.FileSHA256) != 32 || len(m.FileEncSHA256) != 32 {
		return 0, fail("the message does not carry the keys needed to decrypt and check it", mediacrypt.ErrMissingHash)
	}
	return limit, nil
}

// mediaURL is where to download the blob on this attempt: directPath on one of the
// hosts media_conn named, rotating through them. A message with only an absolute url
// is used only if that url is on one of those hosts.
func mediaURL(scheme string, m *msgconv.IncomingMedia, hosts []string, attempt int) (string, error) {
	if len(hosts) == 0 {
		return "", fail("Meta named no media host to download it from", nil)
	}
	order := hosts
	path := m.DirectPath
	if u, err := url.Parse(m.URL); err == nil && m.URL != "" {
		if i := slices.Index(hosts, u.Host); i >= 0 {
			// The url's host goes first: it is where the sender uploaded.
			order = append([]string{hosts[i]}, slices.Delete(slices.Clone(hosts), i, i+1)...)
			if path == "" {
				path = u.RequestURI()
			}
		} else if path == "" {
			return "", fail("it points to a server that is not one of Meta's media hosts", nil)
		}
	}
	if path == "" {
		return "", fail("the message does not say where the file is", nil)
	}
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || strings.ContainsAny(path, "\\#\r\n\t ") {
		return "", fail("the message names the file with an invalid path", nil)
	}
	host := order[attempt%len(order)]
	target := scheme + "://" + host + path
	if u, err := url.Parse(target); err != nil || u.Host != host || u.User != nil {
		return "", fail("the message names the file with an invalid path", err)
	}
	return target, nil
}

// download is one GET of the blob, decrypted into a temporary file. status is the HTTP
// status of a refused request, 0 when the request failed or the blob did not verify.
func (f *mediaFetcher) download(ctx context.Context, target, auth string, exp mediacrypt.Expected) (*os.File, int, error) {
	ctx, cancel := context.WithTimeout(ctx, mediaAttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to build media request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+auth)
	resp, err := f.client.Do(req)
	if err != nil {
		// The error names the URL, which holds no credential (that is in the header).
		return nil, 0, fmt.Errorf("%w: %w", errMediaUnreachable, err)
	}
	defer func() {
		// Drain a little so the connection can be reused, but never a whole blob.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("media host answered HTTP %d", resp.StatusCode)
	}
	if resp.ContentLength > exp.MaxBlobSize {
		return nil, 0, fmt.Errorf("%w: the host announced %d bytes", mediacrypt.ErrTooLarge, resp.ContentLength)
	}
	body := newIdleReader(resp.Body, f.idle(), cancel)
	defer body.stop()
	file, err := mediacrypt.DecryptToFile(f.tempDir, body, exp)
	if err != nil {
		return nil, 0, err
	}
	return file, 0, nil
}

// verifyFailure says why a downloaded blob is refused, in words for the receiver;
// refused is false for errors that are not about the blob (a download that broke off).
func verifyFailure(err error, limit int64, kind string) (reason string, refused bool) {
	switch {
	case errors.Is(err, mediacrypt.ErrTooLarge):
		return fmt.Sprintf("it is over this bridge's limit of %s for %s files", humanBytes(limit), kind), true
	case errors.Is(err, mediacrypt.ErrBadMAC):
		return "the downloaded file failed its integrity check (MAC), so it may have been tampered with", true
	case errors.Is(err, mediacrypt.ErrEncHashMismatch):
		return "the downloaded file does not match its checksum (encrypted SHA-256)", true
	case errors.Is(err, mediacrypt.ErrFileHashMismatch):
		return "the decrypted file does not match its checksum (SHA-256)", true
	case errors.Is(err, mediacrypt.ErrFileLengthMismatch), errors.Is(err, mediacrypt.ErrBadLength):
		return "the downloaded file does not have the size the message announced", true
	case errors.Is(err, mediacrypt.ErrBadPadding):
		return "the downloaded file does not decrypt properly", true
	case errors.Is(err, mediacrypt.ErrBadMediaKey), errors.Is(err, mediacrypt.ErrMissingHash), errors.Is(err, mediacrypt.ErrUnknownMediaType):
		return "the message does not carry the keys needed to decrypt and check it", true
	}
	// A network error, a download that broke off, or local trouble with temporary
	// files: fetching again may help.
	return "", false
}

// humanBytes writes a size for people: 512 bytes, 1.5 KiB, 64 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// mediaFetcher is this login's fetcher, its settings read from the config now.
func (ic *InteropClient) mediaFetcher() *mediaFetcher {
	scheme := "https"
	if section, err := ic.Main.section(ic.Network); err == nil {
		scheme = mediaScheme(section.GatewayURL)
	}
	return &mediaFetcher{
		conns: &ic.mediaConn,
		fetchConn: func(ctx context.Context) (interop.MediaConn, error) {
			acc := ic.account()
			if acc == nil {
				return interop.MediaConn{}, interop.ErrNotConnected
			}
			return acc.Client().FetchMediaConn(ctx)
		},
		client:   ic.mediaConn.httpClient(),
		scheme:   scheme,
		maxBytes: ic.Main.Config.Media.MaxBytes,
		attempts: defaultMediaAttempts,
		backoff:  defaultMediaBackoff,
		now:      time.Now,
	}
}

// mediaUploader puts one portal's incoming attachments in the Matrix content
// repository with the sender's intent.
type mediaUploader struct {
	fetcher *mediaFetcher
	portal  *bridgev2.Portal
	intent  bridgev2.MatrixAPI
	// direct, when set, names the message part the attachment belongs to, so that it
	// can be bridged as a direct media URI instead (directmedia.go).
	direct *directMediaTarget
}

// UploadIncoming downloads and verifies the attachment, then hands the plaintext file
// to bridgev2, which encrypts it first when the room is encrypted.
func (u *mediaUploader) UploadIncoming(ctx context.Context, m *msgconv.IncomingMedia) (*msgconv.UploadedMedia, error) {
	log := zerolog.Ctx(ctx).With().Str("media_type", m.Type.String()).Uint64("declared_size", m.FileLength).Logger()
	if u.intent == nil || u.portal == nil {
		return nil, fail("the bridge has no Matrix room to put it in", nil)
	}
	if up, ok, err := u.directIncoming(ctx, m); ok || err != nil {
		return up, err
	}
	start := time.Now()
	file, err := u.fetcher.fetch(ctx, m)
	if err != nil {
		log.Warn().Err(err).Msg("Failed to download incoming media")
		return nil, err
	}
	name := file.Name()
	// bridgev2 opens the file by name; on Unix, removing it afterwards is safe even
	// while an asynchronous upload still reads it.
	defer func() { _ = os.Remove(name) }()
	st, err := file.Stat()
	_ = file.Close()
	if err != nil {
		return nil, fail("the bridge could not read the downloaded file", err)
	}
	size := st.Size()
	mxc, encrypted, err := u.intent.UploadMediaStream(ctx, u.portal.MXID, size, true,
		func(io.Writer) (*bridgev2.FileStreamResult, error) {
			return &bridgev2.FileStreamResult{ReplacementFile: name, FileName: m.FileName, MimeType: m.Mimetype}, nil
		})
	if errors.Is(err, bridgev2.ErrMediaTooLarge) {
		log.Warn().Err(err).Msg("Homeserver refused incoming media as too large")
		return nil, fail(fmt.Sprintf("it is %s, more than the homeserver accepts", humanBytes(size)), err)
	} else if err != nil {
		log.Err(err).Msg("Failed to upload incoming media to the homeserver")
		return nil, fail("uploading it to the homeserver failed", err)
	}
	log.Debug().Int64("size", size).Bool("encrypted", encrypted != nil).Dur("took", time.Since(start)).Msg("Bridged incoming media")
	return &msgconv.UploadedMedia{URL: mxc, File: encrypted, Size: size, Thumbnail: u.uploadThumbnail(ctx, m.Thumbnail)}, nil
}

// Limits on a message's inline preview: it is meant to be a few kB.
const (
	maxThumbnailBytes = 256 << 10
	maxThumbnailSide  = 2048
)

// uploadThumbnail uploads the message's inline JPEG preview, if it is one. A missing
// or broken preview only means the event has none, so failures are logged, not shown.
func (u *mediaUploader) uploadThumbnail(ctx context.Context, data []byte) *msgconv.UploadedThumbnail {
	if len(data) == 0 {
		return nil
	}
	log := zerolog.Ctx(ctx)
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil || len(data) > maxThumbnailBytes || cfg.Width <= 0 || cfg.Height <= 0 ||
		cfg.Width > maxThumbnailSide || cfg.Height > maxThumbnailSide {
		log.Debug().Err(err).Int("size", len(data)).Msg("Ignoring an incoming thumbnail that is not a small JPEG")
		return nil
	}
	mxc, encrypted, err := u.intent.UploadMedia(ctx, u.portal.MXID, data, "thumbnail.jpg", "image/jpeg")
	if err != nil {
		log.Warn().Err(err).Msg("Failed to upload an incoming thumbnail")
		return nil
	}
	return &msgconv.UploadedThumbnail{URL: mxc, File: encrypted, Width: cfg.Width, Height: cfg.Height, Size: len(data), Mimetype: "image/jpeg"}
}
