package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
)

// Headers of the proxy's signed fetch (PROTOCOL.md section 7); interop/callback signs
// them, and providers verify them with callback.VerifyMediaFetch.
const (
	HeaderTimestamp = callback.HeaderTimestamp
	HeaderSignature = callback.HeaderSignature
)

// DefaultFetchTimeout bounds one fetch when ProxyConfig.HTTPClient is nil.
const DefaultFetchTimeout = 2 * time.Minute

// Refusals of Proxy.Fetch. Each wraps the cause; branch with errors.Is.
var (
	// ErrWrongOrigin: the url is not on the integrator's registered media origin (or
	// is not an absolute http(s) URL at all). Nothing was fetched.
	ErrWrongOrigin = errors.New("media url is not on the integrator's registered media origin")
	// ErrTooLarge: the blob is over the proxy's limit, by its declared file length,
	// its Content-Length, or by what arrived (reading stops one byte past the limit).
	ErrTooLarge = errors.New("media blob over the proxy's size limit")
	// ErrHTTPStatus: the origin answered with something else than 200, a redirect
	// included (an *HTTPStatusError gives the code).
	ErrHTTPStatus = errors.New("media origin answered with an error")
	// ErrUnreachable: the request itself failed (connection, timeout).
	ErrUnreachable = errors.New("media origin unreachable")
	// ErrBadHash: fileEncSha256 or fileSha256 did not match.
	ErrBadHash = errors.New("media blob hash mismatch")
	// ErrBadMAC: the blob's MAC did not verify with the message's media key.
	ErrBadMAC = errors.New("media blob MAC mismatch")
	// ErrBadBlob: the blob is malformed (length, padding, or not the declared length).
	ErrBadBlob = errors.New("media blob malformed")
	// ErrBadMessage: the message lacks what verification needs (key, hashes, type).
	ErrBadMessage = errors.New("message media fields cannot be verified")
)

// HTTPStatusError is an origin's non-200 answer; it matches ErrHTTPStatus.
type HTTPStatusError struct{ Code int }

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d", ErrHTTPStatus, e.Code)
}

// Is makes errors.Is(err, ErrHTTPStatus) hold.
func (e *HTTPStatusError) Is(target error) bool { return target == ErrHTTPStatus }

// ProxyConfig sets up a Proxy.
type ProxyConfig struct {
	// HTTPClient makes the fetches; nil means a client with DefaultFetchTimeout.
	// Redirects are never followed, whatever the client says: they could leave the
	// registered origin.
	HTTPClient *http.Client
	// MaxBlobSize is the largest blob fetched, MAC included; default 100 MiB.
	MaxBlobSize int64
	// TempDir is where blobs and plaintexts are spooled; "" means os.TempDir().
	TempDir string
	// Now is the clock of the signature timestamp; nil means time.Now.
	Now func() time.Time
}

// Proxy is Meta's media proxy for media a third-party provider hosts (PROTOCOL.md
// section 7). Safe for concurrent use.
type Proxy struct {
	client  http.Client
	max     int64
	tempDir string
	now     func() time.Time
}

// NewProxy makes a Proxy.
func NewProxy(cfg ProxyConfig) *Proxy {
	p := &Proxy{max: cfg.MaxBlobSize, tempDir: cfg.TempDir, now: cfg.Now}
	if cfg.HTTPClient != nil {
		p.client = *cfg.HTTPClient
	} else {
		p.client = http.Client{Timeout: DefaultFetchTimeout}
	}
	// A redirect comes back as its own 3xx answer (an HTTPStatusError).
	p.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if p.max <= 0 {
		p.max = mediacrypt.DefaultMaxBlobSize
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

// Fetch downloads a blob a provider hosts for integrator in, and returns its verified
// plaintext as a temporary file (positioned at its start; the caller closes and
// removes it). It fetches only from in.MediaOrigin, with a signed GET, refuses blobs
// over the limit before reading them whole, and releases nothing unless
// fileEncSha256, the MAC and fileSha256 all matched.
func (p *Proxy) Fetch(ctx context.Context, in gateway.Integrator, rawURL string, exp mediacrypt.Expected) (*os.File, error) {
	u, err := checkOrigin(in.MediaOrigin, rawURL)
	if err != nil {
		return nil, err
	}
	if exp.MaxBlobSize <= 0 || exp.MaxBlobSize > p.max {
		exp.MaxBlobSize = p.max
	}
	if exp.FileLength != 0 && (exp.FileLength >= uint64(exp.MaxBlobSize) ||
		encLength(exp.FileLength) > uint64(exp.MaxBlobSize)) {
		return nil, fmt.Errorf("%w: declared file length %d, limit %d", ErrTooLarge, exp.FileLength, exp.MaxBlobSize)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWrongOrigin, err)
	}
	callback.SignMediaFetch(req, in.CallbackSecret, p.now())
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPStatusError{Code: resp.StatusCode}
	}
	if resp.ContentLength > exp.MaxBlobSize {
		return nil, fmt.Errorf("%w: Content-Length %d, limit %d", ErrTooLarge, resp.ContentLength, exp.MaxBlobSize)
	}
	f, err := mediacrypt.DecryptToFile(p.tempDir, io.LimitReader(resp.Body, exp.MaxBlobSize+1), exp)
	if err != nil {
		return nil, ClassifyError(err)
	}
	return f, nil
}

// ClassifyError maps a mediacrypt refusal to this package's refusals (keeping the
// cause in the chain); other errors are read failures (ErrUnreachable). Simulated
// users use it for blobs from the Meta hosts too.
func ClassifyError(err error) error {
	switch {
	case errors.Is(err, mediacrypt.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, mediacrypt.ErrBadMAC):
		return fmt.Errorf("%w: %w", ErrBadMAC, err)
	case errors.Is(err, mediacrypt.ErrEncHashMismatch), errors.Is(err, mediacrypt.ErrFileHashMismatch):
		return fmt.Errorf("%w: %w", ErrBadHash, err)
	case errors.Is(err, mediacrypt.ErrBadLength), errors.Is(err, mediacrypt.ErrFileLengthMismatch),
		errors.Is(err, mediacrypt.ErrBadPadding):
		return fmt.Errorf("%w: %w", ErrBadBlob, err)
	case errors.Is(err, mediacrypt.ErrMissingHash), errors.Is(err, mediacrypt.ErrBadMediaKey),
		errors.Is(err, mediacrypt.ErrUnknownMediaType):
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// encLength is the blob size of a plaintext of n bytes: PKCS#7 always pads.
func encLength(n uint64) uint64 { return (n/16+1)*16 + mediacrypt.MACLength }

// checkOrigin parses rawURL and checks that its origin (scheme, host, port) is the
// registered one.
func checkOrigin(registered, rawURL string) (*url.URL, error) {
	want, err := originOf(registered)
	if err != nil {
		return nil, fmt.Errorf("%w: the integrator has no usable media origin", ErrWrongOrigin)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: unparsable url", ErrWrongOrigin)
	}
	if u.User != nil || u.Opaque != "" {
		return nil, fmt.Errorf("%w: url with credentials or opaque part", ErrWrongOrigin)
	}
	got, err := originOf((&url.URL{Scheme: u.Scheme, Host: u.Host}).String())
	if err != nil || got != want {
		return nil, ErrWrongOrigin
	}
	if !strings.HasPrefix(u.EscapedPath(), "/") {
		return nil, fmt.Errorf("%w: url without a path", ErrWrongOrigin)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// originOf normalizes an origin to "scheme://host:port" (lower case, default port
// made explicit), refusing anything with a path, query or credentials.
func originOf(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("not an origin")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}
