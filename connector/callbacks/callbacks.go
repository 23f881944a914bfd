// Package callbacks serves the HTTP callbacks Meta's gateway makes to the bridge
// (PROTOCOL.md section 9): the auth check of a login token, the push that asks the
// bridge to connect an account, and (through a hook) the media proxy's fetches of
// section 7. It verifies every request's signature and timestamp with interop/callback
// before looking at its body.
//
// # The URL admins register with Meta
//
// Register the bridge's public appservice address (bridgev2's
// appservice.public_address, e.g. https://bridge.example.org) as the callback base
// for BOTH networks, and the same address as the media origin. Meta then calls
// https://bridge.example.org/_interop/v1/auth and /_interop/v1/push exactly as
// PROTOCOL.md says. WhatsApp and Messenger sign with different callback secrets; the
// handler tells the networks apart by which secret verifies the request, so no
// network segment is needed in the URL, and a request is never attributed to a network
// whose secret did not sign it. The secrets must therefore differ (New refuses equal
// ones).
//
// The package must not import bridgev2's central bridge or the interop client: it gets
// what it needs through the TokenChecker, Pusher and MediaServer interfaces.
package callbacks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Paths the handler serves; mount it at PathPrefix.
const (
	PathPrefix = "/_interop/v1/"
	AuthPath   = PathPrefix + "auth"
	PushPath   = PathPrefix + "push"
	// MediaPrefix is where the bridge's hosted media lives (section 7): the rest of the
	// path is the MediaServer's.
	MediaPrefix = PathPrefix + "media/"
)

// MinSecretLength is the shortest callback secret accepted (PROTOCOL.md: 32+ bytes).
const MinSecretLength = 32

// DefaultMaxBody bounds a JSON callback body: a JID, a token and a number.
const DefaultMaxBody = 8 << 10

// ErrUnknownAccount is what a Pusher returns for an account the bridge has no login
// for; the push is then answered 404.
var ErrUnknownAccount = errors.New("no login for this interop account")

// TokenChecker says whether a login token is live; database.Database implements it.
// An unknown account or a wrong, revoked or expired token is valid=false with no error;
// err is for trouble that should not log the user out.
type TokenChecker interface {
	CheckToken(ctx context.Context, network, jid, token string) (valid bool, expiresAt time.Time, err error)
}

// Pusher connects an account that has stanzas waiting; the connector implements it.
// Push must return quickly: the connection is made in the background, within 60 s.
type Pusher interface {
	Push(ctx context.Context, network string, account jid.JID, pending int) error
}

// MediaServer serves the bridge's hosted media blobs. The handler has already checked
// the fetch's signature and timestamp; network is the one whose secret signed it and
// path is what follows MediaPrefix (still escaped).
type MediaServer interface {
	ServeMedia(w http.ResponseWriter, r *http.Request, network, path string)
}

// Network is one network's callback settings.
type Network struct {
	// Name is what TokenChecker, Pusher and MediaServer get: "whatsapp" or "messenger".
	Name string
	// IntegratorID is the bridge's integrator id on this network; accounts of other
	// integrators are unknown here and refused without a database lookup.
	IntegratorID uint16
	// Secret is the callback secret Meta gave for this network.
	Secret []byte
}

// Config sets up a Handler.
type Config struct {
	Networks []Network
	Tokens   TokenChecker
	Pusher   Pusher
	// Media serves hosted media; nil answers every media fetch 404.
	Media MediaServer
	// PublicPathPrefix is the path of the public callback base URL ("/meta" for
	// https://host/meta), which a reverse proxy strips before the request gets here.
	// Meta's proxy signs the path it fetched, prefix included, so media fetches are
	// also checked against prefix + path.
	PublicPathPrefix string
	// MaxBody bounds JSON bodies; 0 means DefaultMaxBody.
	MaxBody int64
	// Now is the clock of the timestamp check; nil means time.Now.
	Now func() time.Time
	Log zerolog.Logger
}

// Handler is the http.Handler of the callbacks. Safe for concurrent use.
type Handler struct {
	cfg     Config
	secrets [][]byte
}

var _ http.Handler = (*Handler)(nil)

// New checks cfg and makes a Handler.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Networks) == 0 {
		return nil, errors.New("no network has callbacks configured")
	}
	if cfg.Tokens == nil || cfg.Pusher == nil {
		return nil, errors.New("callbacks need a TokenChecker and a Pusher")
	}
	h := &Handler{cfg: cfg}
	for i, n := range cfg.Networks {
		if n.Name == "" {
			return nil, fmt.Errorf("network %d has no name", i)
		}
		if len(n.Secret) < MinSecretLength {
			return nil, fmt.Errorf("the %s callback secret is shorter than %d bytes", n.Name, MinSecretLength)
		}
		for _, m := range cfg.Networks[:i] {
			if m.Name == n.Name {
				return nil, fmt.Errorf("network %s is configured twice", n.Name)
			}
			if bytes.Equal(m.Secret, n.Secret) {
				return nil, fmt.Errorf("%s and %s share a callback secret: callbacks could not be told apart", m.Name, n.Name)
			}
		}
		h.secrets = append(h.secrets, n.Secret)
	}
	if h.cfg.MaxBody <= 0 {
		h.cfg.MaxBody = DefaultMaxBody
	}
	if h.cfg.Now == nil {
		h.cfg.Now = time.Now
	}
	return h, nil
}

// Mount registers the handler on mux (bridgev2's appservice router) under PathPrefix.
func (h *Handler) Mount(mux *http.ServeMux) { mux.Handle(PathPrefix, h) }

// ServeHTTP answers one callback.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.cfg.Log.With().Str("component", "interop_callbacks").Str("path", r.URL.Path).Logger()
	ctx := log.WithContext(r.Context())
	switch {
	case r.URL.Path == AuthPath || r.URL.Path == PushPath:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		nw, body, ok := h.verify(ctx, w, r)
		if !ok {
			return
		}
		if r.URL.Path == AuthPath {
			h.serveAuth(ctx, w, nw, body)
		} else {
			h.servePush(ctx, w, nw, body)
		}
	case strings.HasPrefix(r.URL.Path, MediaPrefix):
		h.serveMedia(ctx, w, r)
	default:
		writeError(w, http.StatusNotFound, "no such callback")
	}
}

// verify checks the signature and timestamp and finds the network whose secret signed
// the request. On failure it has answered the request.
func (h *Handler) verify(ctx context.Context, w http.ResponseWriter, r *http.Request) (Network, []byte, bool) {
	i, body, err := callback.VerifyRequestAny(r, h.secrets, h.cfg.Now(), h.cfg.MaxBody)
	if err != nil {
		status := http.StatusUnauthorized
		if errors.Is(err, callback.ErrBodyTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		// The error names the refusal only; it never holds the body (and its token).
		zerolog.Ctx(ctx).Warn().Err(err).Str("remote_addr", r.RemoteAddr).Msg("Refused an unverified callback")
		writeError(w, status, refusal(err))
		return Network{}, nil, false
	}
	return h.cfg.Networks[i], body, true
}

// account parses a callback's JID and checks it is an account of ours on nw.
func account(nw Network, raw string) (jid.JID, bool) {
	j, err := jid.Parse(raw)
	if err != nil || !j.IsInterop() || j.Device != 0 || j.Number() == "" {
		return jid.JID{}, false
	}
	if integrator, ok := j.IntegratorID(); !ok || (nw.IntegratorID != 0 && integrator != nw.IntegratorID) {
		return jid.JID{}, false
	}
	return j, true
}

type authRequest struct {
	JID   string `json:"jid"`
	Token string `json:"token"`
}

type authAnswer struct {
	Valid     bool  `json:"valid"`
	ExpiresAt int64 `json:"expires_at,omitempty"`
}

func (h *Handler) serveAuth(ctx context.Context, w http.ResponseWriter, nw Network, body []byte) {
	var req authRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "body is not an auth request")
		return
	}
	log := zerolog.Ctx(ctx).With().Str("network", nw.Name).Str("account", req.JID).Logger()
	acc, ok := account(nw, req.JID)
	if !ok || req.Token == "" {
		log.Debug().Msg("Refused auth for an account that is not ours")
		writeJSON(w, http.StatusUnauthorized, authAnswer{})
		return
	}
	valid, expiresAt, err := h.cfg.Tokens.CheckToken(ctx, nw.Name, acc.String(), req.Token)
	if err != nil {
		// Not a 401: a database hiccup must not make the gateway think the user's
		// token is gone.
		log.Err(err).Msg("Failed to check a login token")
		writeError(w, http.StatusInternalServerError, "token check failed")
		return
	}
	if !valid {
		log.Info().Msg("Refused auth with an unknown, revoked or expired token")
		writeJSON(w, http.StatusUnauthorized, authAnswer{})
		return
	}
	log.Debug().Time("expires_at", expiresAt).Msg("Confirmed a login token")
	writeJSON(w, http.StatusOK, authAnswer{Valid: true, ExpiresAt: expiresAt.Unix()})
}

type pushRequest struct {
	JID     string `json:"jid"`
	Pending int    `json:"pending"`
}

func (h *Handler) servePush(ctx context.Context, w http.ResponseWriter, nw Network, body []byte) {
	var req pushRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Pending < 0 {
		writeError(w, http.StatusBadRequest, "body is not a push")
		return
	}
	log := zerolog.Ctx(ctx).With().Str("network", nw.Name).Str("account", req.JID).Int("pending", req.Pending).Logger()
	acc, ok := account(nw, req.JID)
	if !ok {
		log.Debug().Msg("Refused a push for an account that is not ours")
		writeError(w, http.StatusNotFound, "unknown account")
		return
	}
	err := h.cfg.Pusher.Push(ctx, nw.Name, acc, req.Pending)
	switch {
	case errors.Is(err, ErrUnknownAccount):
		log.Debug().Msg("Refused a push for an account without a login")
		writeError(w, http.StatusNotFound, "unknown account")
	case err != nil:
		log.Err(err).Msg("Failed to handle a push")
		writeError(w, http.StatusInternalServerError, "push failed")
	default:
		log.Debug().Msg("Accepted a push")
		w.WriteHeader(http.StatusAccepted)
	}
}

func (h *Handler) serveMedia(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	i, err := callback.VerifyMediaFetchAny(r, h.secrets, h.cfg.Now())
	if prefix := strings.TrimRight(h.cfg.PublicPathPrefix, "/"); err != nil && prefix != "" {
		public := r.Clone(ctx)
		u := *r.URL
		u.Path, u.RawPath = prefix+r.URL.Path, prefix+r.URL.EscapedPath()
		public.URL = &u
		if j, perr := callback.VerifyMediaFetchAny(public, h.secrets, h.cfg.Now()); perr == nil {
			i, err = j, nil
		}
	}
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("remote_addr", r.RemoteAddr).Msg("Refused an unverified media fetch")
		writeError(w, http.StatusUnauthorized, refusal(err))
		return
	}
	if h.cfg.Media == nil {
		writeError(w, http.StatusNotFound, "no such media")
		return
	}
	h.cfg.Media.ServeMedia(w, r, h.cfg.Networks[i].Name, strings.TrimPrefix(r.URL.EscapedPath(), MediaPrefix))
}

// refusal is the short reason told to the caller: enough to fix a clock or a secret,
// nothing about our state.
func refusal(err error) string {
	switch {
	case errors.Is(err, callback.ErrMissingHeaders):
		return "missing signature headers"
	case errors.Is(err, callback.ErrBadTimestamp):
		return "bad timestamp"
	case errors.Is(err, callback.ErrStale):
		return "timestamp too far from now"
	case errors.Is(err, callback.ErrBodyTooLarge):
		return "body too large"
	default:
		return "bad signature"
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
