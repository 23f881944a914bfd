// Package mediahost keeps the encrypted blobs the bridge's users send and serves them
// to Meta's media proxy (PROTOCOL.md section 7): each blob under a fresh unguessable
// name, recorded in the bridge's database with the network allowed to fetch it and
// the message it belongs to, deleted when the message is revoked (Forget) or after the
// retention period (Sweep).
//
// The callbacks handler checks each fetch's signature and timestamp and tells
// ServeMedia which network signed it; this package decides what is served. It must
// not import the connector, bridgev2's central bridge or the interop client.
package mediahost

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/callbacks"
	"github.com/matrix-meta-interop/matrix-meta-interop/database"
)

// nameBytes is the randomness of a blob name: 256 bits, 43 URL-safe characters.
const nameBytes = 32

// NameLength is the length of every name Host gives.
var NameLength = base64.RawURLEncoding.EncodedLen(nameBytes)

// Records is the table of hosted blobs; database.Database implements it.
type Records interface {
	InsertHostedMedia(ctx context.Context, m database.HostedMedia) error
	SetHostedMediaSize(ctx context.Context, name string, size int64) (bool, error)
	HostedMediaByName(ctx context.Context, name string) (*database.HostedMedia, error)
	HostedMediaOfMessage(ctx context.Context, loginID, messageID string) ([]string, error)
	HostedMediaBefore(ctx context.Context, t time.Time, limit int) ([]string, error)
	DeleteHostedMedia(ctx context.Context, name string) (bool, error)
}

var (
	_ Records               = (*database.Database)(nil)
	_ callbacks.MediaServer = (*Hosting)(nil)
)

// HostedBlob is where Meta's proxy fetches a hosted blob.
type HostedBlob struct {
	URL        string // absolute: {callback_base_url}/_interop/v1/media/{name}
	DirectPath string // the path part of URL: /_interop/v1/media/{name}
	Size       int64  // bytes of the encrypted blob
}

// Config sets up a Hosting.
type Config struct {
	// BaseURL is the callback base URL registered with Meta as the media origin; blob
	// URLs are BaseURL + callbacks.MediaPrefix + name. Without one, Host fails with a
	// message saying what to configure.
	BaseURL string
	Store   Store
	Records Records
	// Now is the clock of creation times and the sweeper; nil means time.Now.
	Now func() time.Time
	Log zerolog.Logger
}

// Hosting keeps the encrypted blobs our users send and serves them to Meta's proxy.
// Safe for concurrent use.
type Hosting struct {
	base    *url.URL
	baseErr error
	store   Store
	records Records
	now     func() time.Time
	log     zerolog.Logger
}

// New makes a Hosting. A missing or unusable BaseURL is not an error here (the bridge
// still serves text); Host reports it.
func New(cfg Config) (*Hosting, error) {
	if cfg.Store == nil || cfg.Records == nil {
		return nil, errors.New("media hosting needs a store and a records table")
	}
	h := &Hosting{store: cfg.Store, records: cfg.Records, now: cfg.Now, log: cfg.Log}
	if h.now == nil {
		h.now = time.Now
	}
	// A base URL with a path works when the reverse proxy strips it: the callbacks
	// handler checks signatures against the public path too (PublicPathPrefix).
	h.base, h.baseErr = parseBase(cfg.BaseURL)
	return h, nil
}

func parseBase(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("no callback base URL is configured (network.callback_base_url or appservice.public_address): Meta's proxy could not fetch media")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("the callback base URL %q is not an absolute http(s) URL without credentials or query", raw)
	}
	return u, nil
}

// Host stores the encrypted blob read from r (streamed, constant memory) under a fresh unguessable name
// (>= 128 random bits, URL-safe) for one outgoing message, records it, and returns where it is served.
//
// The row is written before the blob, so a crash never leaves a blob that nothing
// would delete; a row without its blob is served as 404 and swept like any other.
func (h *Hosting) Host(ctx context.Context, network, loginID, messageID string, r io.Reader) (HostedBlob, error) {
	if h.baseErr != nil {
		return HostedBlob{}, fmt.Errorf("cannot host media: %w", h.baseErr)
	}
	if network == "" || loginID == "" || messageID == "" {
		return HostedBlob{}, errors.New("cannot host media without a network, login and message")
	}
	var rnd [nameBytes]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return HostedBlob{}, fmt.Errorf("failed to make a media name: %w", err)
	}
	name := base64.RawURLEncoding.EncodeToString(rnd[:])
	rec := database.HostedMedia{Name: name, Network: network, LoginID: loginID, MessageID: messageID, CreatedAt: h.now()}
	if err := h.records.InsertHostedMedia(ctx, rec); err != nil {
		return HostedBlob{}, err
	}
	size, err := h.store.Create(ctx, name, r)
	if err != nil {
		h.drop(ctx, name)
		return HostedBlob{}, fmt.Errorf("failed to store hosted media: %w", err)
	}
	if ok, err := h.records.SetHostedMediaSize(ctx, name, size); err != nil || !ok {
		h.drop(ctx, name)
		if err == nil {
			err = errors.New("the message was revoked while its media was being stored")
		}
		return HostedBlob{}, err
	}
	u := *h.base
	u.Path = strings.TrimSuffix(u.Path, "/") + callbacks.MediaPrefix + name
	u.RawPath = ""
	return HostedBlob{URL: u.String(), DirectPath: u.EscapedPath(), Size: size}, nil
}

// drop removes a blob and its row after a failed Host; failures are only logged, the
// sweeper gets what is left.
func (h *Hosting) drop(ctx context.Context, name string) {
	ctx = context.WithoutCancel(ctx)
	if err := h.store.Delete(ctx, name); err != nil {
		h.logger(ctx).Err(err).Msg("Failed to delete the blob of a failed media upload")
		return
	}
	if _, err := h.records.DeleteHostedMedia(ctx, name); err != nil {
		h.logger(ctx).Err(err).Msg("Failed to delete the record of a failed media upload")
	}
}

// Forget deletes every blob of a message (its revoke); no error when there is none.
// Each blob goes before its row: a blob is never left without the row that would get
// it deleted later.
func (h *Hosting) Forget(ctx context.Context, loginID, messageID string) error {
	names, err := h.records.HostedMediaOfMessage(ctx, loginID, messageID)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		errs = append(errs, h.remove(ctx, name))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("failed to delete the media of a revoked message: %w", err)
	}
	if len(names) > 0 {
		h.logger(ctx).Debug().Str("login_id", loginID).Str("message_id", messageID).Int("blobs", len(names)).
			Msg("Deleted the hosted media of a revoked message")
	}
	return nil
}

// remove deletes one blob, then its row. A row whose name no store accepts (written
// by hand or by a bug) has no blob: only the row goes, so it cannot block the sweeps.
func (h *Hosting) remove(ctx context.Context, name string) error {
	if err := h.store.Delete(ctx, name); err != nil && !errors.Is(err, ErrInvalidName) {
		return err
	}
	_, err := h.records.DeleteHostedMedia(ctx, name)
	return err
}

// ServeMedia implements callbacks.MediaServer: 404 for unknown names or another network's blob, Range support
// (http.ServeContent), Content-Length, Content-Type application/octet-stream, no listings, no path tricks.
//
// path is the escaped rest of the URL after callbacks.MediaPrefix; only a name exactly
// as Host makes them is looked up, so escapes, dots and slashes never reach the store.
func (h *Hosting) ServeMedia(w http.ResponseWriter, r *http.Request, network, path string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	if len(path) != NameLength || !ValidName(path) {
		notFound(w)
		return
	}
	rec, err := h.records.HostedMediaByName(ctx, path)
	if err != nil {
		h.logger(ctx).Err(err).Msg("Failed to look up hosted media")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if rec == nil || rec.Network != network {
		// The same answer for both: a fetch signed for one network learns nothing about
		// the other's blobs.
		notFound(w)
		return
	}
	blob, err := h.store.Open(ctx, path)
	if errors.Is(err, ErrNotFound) {
		h.logger(ctx).Warn().Str("login_id", rec.LoginID).Str("message_id", rec.MessageID).
			Msg("Hosted media is recorded but its blob is missing")
		notFound(w)
		return
	} else if err != nil {
		h.logger(ctx).Err(err).Msg("Failed to open hosted media")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	defer blob.Close()
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Cache-Control", "private, no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", blob.ModTime(), servedContent(blob))
}

// servedContent is what ServeContent reads a blob from: a FileStore blob's *os.File
// itself, so that the server can send it with sendfile(2) instead of copying it
// through user space.
func servedContent(blob Blob) io.ReadSeeker {
	if fb, ok := blob.(*fileBlob); ok {
		return fb.File
	}
	return blob
}

func notFound(w http.ResponseWriter) {
	http.Error(w, "no such media", http.StatusNotFound)
}

func (h *Hosting) logger(ctx context.Context) *zerolog.Logger {
	if l := zerolog.Ctx(ctx); l != zerolog.DefaultContextLogger && l.GetLevel() != zerolog.Disabled {
		return l
	}
	return &h.log
}
