package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
)

// Defaults of HostConfig.
const (
	DefaultTokenTTL    = time.Hour
	DefaultMaxBlobSize = mediacrypt.DefaultMaxBlobSize
)

var (
	// ErrNotFound: no blob at that directPath.
	ErrNotFound = errors.New("no such media blob")
	// ErrBlobTooLarge: an upload over HostConfig.MaxBlobSize.
	ErrBlobTooLarge = errors.New("media blob larger than the host accepts")
	// ErrUnavailable: the host is down on purpose (FaultUnavailable).
	ErrUnavailable = errors.New("media host unavailable")
)

// HostConfig sets up a Host.
type HostConfig struct {
	// Dir keeps blobs as files in this directory; "" keeps them in memory.
	Dir string
	// DB persists media_conn tokens (table metasim_media_token) so that tokens handed
	// out before a restart stay valid for their TTL; nil keeps them in memory.
	DB *dbutil.Database
	// Hosts are what media_conn hands out: host or host:port of the HTTP server that
	// serves this Host (ServeHTTP). SetHosts changes them once the server listens.
	Hosts []string
	// Scheme is used for the url field of messages (URL); default "https".
	Scheme string
	// TokenTTL is how long a media_conn token is valid; default DefaultTokenTTL.
	TokenTTL time.Duration
	// MaxBlobSize caps uploads; default DefaultMaxBlobSize (100 MiB).
	MaxBlobSize int64
	// Now is the clock of token expiry; nil means time.Now.
	Now func() time.Time
	// Log is used for the database section and for requests without a logger.
	Log zerolog.Logger
}

// Host is Meta's media hosts (PROTOCOL.md section 7): blobs uploaded by simulated Meta
// users, served at GET {directPath} to requests with "Authorization: Bearer {auth}",
// auth being an unexpired media_conn token. Safe for concurrent use.
type Host struct {
	cfg    HostConfig
	blobs  blobStore
	tokens *tokenStore
	faults faultSet

	mu    sync.RWMutex
	hosts []string
}

var _ http.Handler = (*Host)(nil)

// NewHost opens a Host, creating its directory and tables as needed.
func NewHost(ctx context.Context, cfg HostConfig) (*Host, error) {
	if cfg.Scheme == "" {
		cfg.Scheme = "https"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.TokenTTL < time.Second {
		// media_conn carries the TTL in whole seconds.
		return nil, fmt.Errorf("token TTL %s is under a second", cfg.TokenTTL)
	}
	if cfg.MaxBlobSize <= 0 {
		cfg.MaxBlobSize = DefaultMaxBlobSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Host{cfg: cfg, hosts: slices.Clone(cfg.Hosts), tokens: newTokenStore(cfg.DB, cfg.Log)}
	if cfg.Dir == "" {
		h.blobs = newMemBlobs()
	} else {
		disk, err := newDiskBlobs(cfg.Dir)
		if err != nil {
			return nil, err
		}
		h.blobs = disk
	}
	if err := h.tokens.upgrade(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

// SetHosts replaces the hosts media_conn hands out (host or host:port each), for
// when the HTTP server's address is known only after it started listening.
func (h *Host) SetHosts(hosts []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hosts = slices.Clone(hosts)
}

// Hosts returns the hosts media_conn hands out.
func (h *Host) Hosts() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Clone(h.hosts)
}

// URL is the absolute URL of a blob on the first host, for a message's url field.
func (h *Host) URL(directPath string) string {
	hosts := h.Hosts()
	if len(hosts) == 0 {
		return ""
	}
	return h.cfg.Scheme + "://" + hosts[0] + directPath
}

// MediaConn hands out download credentials for account (gateway.Config.MediaConn):
// a new token valid for the TTL, and the hosts. It returns an empty auth when it
// cannot, which the gateway answers with 503.
func (h *Host) MediaConn(account jid.JID) (auth string, ttl time.Duration, hosts []string) {
	hosts = h.Hosts()
	if len(hosts) == 0 {
		return "", 0, nil
	}
	ctx := h.cfg.Log.WithContext(context.Background())
	token, err := h.tokens.issue(ctx, account, h.cfg.Now(), h.cfg.TokenTTL)
	if err != nil {
		h.cfg.Log.Err(err).Stringer("account", account).Msg("Failed to issue a media_conn token")
		return "", 0, nil
	}
	return token, h.cfg.TokenTTL, hosts
}

// Upload stores an (already encrypted) blob and returns its directPath. Simulated
// users call it in-process.
func (h *Host) Upload(ctx context.Context, r io.Reader) (string, error) {
	name, err := newBlobName()
	if err != nil {
		return "", err
	}
	if _, err := h.blobs.put(name, r, h.cfg.MaxBlobSize); err != nil {
		return "", fmt.Errorf("failed to upload media: %w", err)
	}
	return directPathOf(name), nil
}

// Open reads a blob in-process, as the hosts would serve it (faults included): what
// a simulated user downloads. The caller closes the reader.
func (h *Host) Open(ctx context.Context, directPath string) (io.ReadCloser, int64, error) {
	name, ok := blobNameOf(directPath)
	if !ok {
		return nil, 0, ErrNotFound
	}
	fault := h.faults.get(directPath)
	if fault == FaultUnavailable {
		return nil, 0, ErrUnavailable
	}
	blob, size, err := h.blobs.open(name)
	if err != nil {
		return nil, 0, err
	}
	sr := serveAs(fault, blob, size)
	return readCloser{Reader: sr, Closer: blob}, sr.Size(), nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Delete removes a blob (a revoked message's media, say).
func (h *Host) Delete(ctx context.Context, directPath string) error {
	name, ok := blobNameOf(directPath)
	if !ok {
		return ErrNotFound
	}
	return h.blobs.remove(name)
}

// SetFault makes the hosts misbehave for one directPath, or for every blob when
// directPath is "". FaultNone removes the fault.
func (h *Host) SetFault(directPath string, f Fault) { h.faults.set(directPath, f) }

// ClearFaults removes every fault.
func (h *Host) ClearFaults() { h.faults.clear() }

// ServeHTTP serves GET and HEAD {directPath} with Range support. Refusals: 503 while
// FaultUnavailable holds, 401 without a valid, unexpired bearer token (before anything
// about the blob is revealed), 404 for an unknown path.
func (h *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	directPath := r.URL.Path
	fault := h.faults.get(directPath)
	if fault == FaultUnavailable {
		http.Error(w, "media host unavailable", http.StatusServiceUnavailable)
		return
	}
	ctx := r.Context()
	if zerolog.Ctx(ctx).GetLevel() == zerolog.Disabled {
		ctx = h.cfg.Log.WithContext(ctx)
	}
	ok, err := h.authorized(ctx, r)
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to check a media token")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	} else if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="media"`)
		http.Error(w, "missing, unknown or expired media token", http.StatusUnauthorized)
		return
	}
	name, ok := blobNameOf(directPath)
	if !ok {
		http.NotFound(w, r)
		return
	}
	blob, size, err := h.blobs.open(name)
	if errors.Is(err, ErrNotFound) {
		http.NotFound(w, r)
		return
	} else if err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to open a media blob")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	defer blob.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", time.Time{}, serveAs(fault, blob, size))
}

// authorized checks "Authorization: Bearer {token}".
func (h *Host) authorized(ctx context.Context, r *http.Request) (bool, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false, nil
	}
	return h.tokens.valid(ctx, strings.TrimSpace(token), h.cfg.Now())
}
