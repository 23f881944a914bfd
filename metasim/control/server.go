// Package control is the simulator's control API (PROTOCOL.md, Appendix): JSON over
// HTTP, every request carrying "Authorization: Bearer {token}". A test, a demo script
// or an admin with curl uses it to create Meta users and devices, opt them in, make
// them send and read what they received, break connections and inspect the gateway.
// The endpoints are documented in metasim/API.md.
//
// It translates HTTP into calls on the gateways, the simulated users and the media
// hosts, and holds no protocol logic. It must not import the root metasim package
// (which assembles it) nor the bridge.
package control

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

// DefaultMaxBody bounds a request body: a base64 media upload of a few MiB fits,
// anything larger is refused with 413 before it is read whole.
const DefaultMaxBody = 32 << 20

// Config sets up the control API.
type Config struct {
	// Token is the bearer token every request must carry.
	Token string
	// Gateways by network name (gateway.NetworkWhatsApp, gateway.NetworkMessenger).
	Gateways map[string]*gateway.Gateway
	// Status reports the simulator's addresses and keys for GET /v1/status.
	Status func() Status
	// Users are the simulated Meta users, by network name.
	Users map[string]*simuser.Manager
	// Media is Meta's media hosts, for their faults.
	Media *media.Host
	// MaxBody bounds request bodies; 0 means DefaultMaxBody.
	MaxBody int64
}

// Server is the control API's http.Handler.
type Server struct {
	cfg Config
	log zerolog.Logger
	mux *http.ServeMux

	// ctx ends at Close, which cuts long-polls short so shutdown does not wait for them.
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

var _ http.Handler = (*Server)(nil)

// New makes the control API.
func New(cfg Config, log zerolog.Logger) *Server {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Gateways == nil {
		cfg.Gateways = map[string]*gateway.Gateway{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux(), ctx: ctx, cancel: cancel}
	s.routes()
	return s
}

// Close ends the long-polls in progress; later requests are still answered.
func (s *Server) Close() {
	s.once.Do(s.cancel)
}

func (s *Server) routes() {
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request) error) {
		s.mux.Handle(pattern, s.wrap(fn))
	}
	h("GET /v1/status", s.getStatus)

	h("POST /v1/users", s.createUser)
	h("GET /v1/users", s.listUsers)
	h("GET /v1/users/{jid}", s.getUser)
	h("PATCH /v1/users/{jid}", s.patchUser)
	h("POST /v1/users/{jid}/devices", s.addDevice)
	h("DELETE /v1/users/{jid}/devices/{device}", s.removeDevice)
	h("PUT /v1/users/{jid}/opt-in", s.setOptIn)
	h("POST /v1/users/{jid}/restrict", s.restrict)
	h("DELETE /v1/users/{jid}/restrict", s.unrestrict)

	h("GET /v1/groups", s.listGroups)
	h("GET /v1/groups/{jid}", s.getGroup)

	h("GET /v1/accounts", s.listAccounts)
	h("GET /v1/accounts/{jid}", s.getAccount)
	h("POST /v1/accounts/{jid}/restrict", s.restrict)
	h("DELETE /v1/accounts/{jid}/restrict", s.unrestrict)

	h("GET /v1/connections", s.listConnections)
	h("POST /v1/faults", s.addFault)
	h("DELETE /v1/faults", s.clearFaults)

	h("POST /v1/media/faults", s.setMediaFault)
	h("DELETE /v1/media/faults", s.clearMediaFaults)

	s.userRoutes(h)

	s.mux.Handle("/", s.wrap(func(http.ResponseWriter, *http.Request) error {
		return errNotFound("no such endpoint")
	}))
}

// ServeHTTP checks the token and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="metasim"`)
		writeError(w, &apiError{Status: http.StatusUnauthorized, Message: "missing or wrong bearer token"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	s.mux.ServeHTTP(w, r)
}

// authorized compares in constant time so the token cannot be guessed byte by byte.
func (s *Server) authorized(r *http.Request) bool {
	given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s.cfg.Token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(given), []byte(s.cfg.Token)) == 1
}

// wrap turns a handler's error into the JSON error answer, and a panic into a 500,
// so bad input can never take the simulator down.
func (s *Server) wrap(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log := s.log.With().Str("method", r.Method).Str("path", r.URL.Path).Logger()
		r = r.WithContext(log.WithContext(r.Context()))
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error().Any("panic", p).Msg("Control handler panicked")
				writeError(w, &apiError{Status: http.StatusInternalServerError, Message: "internal error"})
			}
		}()
		if err := fn(w, r); err != nil {
			if r.Context().Err() != nil {
				return // the client went away; nobody reads an answer
			}
			ae := toAPIError(err)
			if ae.Status >= 500 {
				log.Err(err).Msg("Control request failed")
			}
			writeError(w, ae)
		}
	})
}
