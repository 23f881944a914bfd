// Package gateway is the simulator of Meta's interop gateway for one network
// (WhatsApp on s.whatsapp.net or Messenger on msgr), Meta's side of PROTOCOL.md: it
// accepts third-party accounts over WebSocket+Noise (checking their tokens through the
// provider's auth callback) and simulated Meta devices in-process (ConnectDevice), and
// routes stanzas between them with Meta's rules: key directory, device lists and
// phash, opt-in, blocks, spam restrictions, rate limits, groups, acked delivery with
// persistent offline queues and push callbacks. Faults lets a test or an admin break
// things on purpose.
//
// It behaves like Meta's gateway, not like a mirror of our client: when the protocol
// says the gateway refuses, it refuses. Its state lives in the database given to New
// (tables prefixed metasim_, keyed by network, see internal/gwstore).
//
// It must not import the bridge (connector/, Matrix packages) nor the simulated users
// (metasim/simuser): Meta devices reach it only through ConnectDevice, speaking the
// same stanzas as everybody else.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/flynn/noise"
	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waCert"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/callback"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// Networks.
const (
	NetworkWhatsApp  = "whatsapp"
	NetworkMessenger = "messenger"
)

// Integrator is one provider with a signed agreement (PROTOCOL.md section 1).
type Integrator struct {
	ID   uint16
	Name string
	// CallbackBase is where the auth and push callbacks go (section 9), e.g.
	// "https://provider.example"; the paths /_interop/v1/… are appended.
	CallbackBase string
	// MediaOrigin is the provider's registered media origin (section 7); the gateway
	// itself does not use it, the media proxy does.
	MediaOrigin    string
	CallbackSecret []byte
}

// Config sets up a Gateway.
type Config struct {
	Network   string // NetworkWhatsApp or NetworkMessenger
	Server    string // jid.ServerGateway or jid.ServerMessenger: the Meta users' server
	Product   waWa6.ClientPayload_Product
	StaticKey noise.DHKey
	CertChain *waCert.CertChain

	Integrators []Integrator
	// RequireEEA refuses logins of non-EEA numbers with 403 (section 1) and keeps
	// non-EEA Meta users out of reach of third-party accounts.
	RequireEEA bool
	Limits     Limits
	// MediaConn answers media_conn (section 7) for an account; nil answers 503.
	MediaConn func(account jid.JID) (auth string, ttl time.Duration, hosts []string)
	// HTTPClient makes the callbacks; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock of timestamps, rate limits, restrictions and queue expiry; nil
	// means time.Now. Connection timeouts always use the real clock.
	Now func() time.Time
}

// Limits are the gateway's numbers. Zero fields take the protocol's values
// (DefaultLimits); tests shorten them.
type Limits struct {
	// Section 8: per third-party account.
	BurstMessages      int           // 30 …
	BurstWindow        time.Duration // … per 10 s
	HourlyMessages     int           // 1000 …
	HourlyWindow       time.Duration // … per hour
	NewConversations   int           // 50 Meta users who never wrote to the account …
	ConversationWindow time.Duration // … per 24 h

	// Section 3.2: offline queues.
	QueueRetention time.Duration // 7 days
	QueueMax       int           // 10,000 stanzas per endpoint
	// PushInterval is the least time between two push callbacks for one account.
	PushInterval time.Duration // 30 s

	// Section 3.1: a connection that sent no frame for this long is closed.
	IdleTimeout time.Duration // 90 s
	// HandshakeTimeout bounds the Noise handshake and the auth callback.
	HandshakeTimeout time.Duration // 20 s
	// WriteTimeout drops a connection whose peer does not take a frame in time.
	WriteTimeout time.Duration // 30 s

	MaxGroupSize int // 256 (section 6)

	// Section 8: reports from this many distinct users restrict an account for
	// RestrictionLength.
	ReportsBeforeRestriction int           // 3
	RestrictionLength        time.Duration // 24 h

	// PreKeyLowWater: below this many one-time prekeys the device is told (section 5).
	PreKeyLowWater int // 10
	// ReorderWindow is how long Faults.ReorderNext waits to collect its stanzas.
	ReorderWindow time.Duration // 500 ms
}

// DefaultLimits are the protocol's numbers.
func DefaultLimits() Limits {
	return Limits{
		BurstMessages: 30, BurstWindow: 10 * time.Second,
		HourlyMessages: 1000, HourlyWindow: time.Hour,
		NewConversations: 50, ConversationWindow: 24 * time.Hour,
		QueueRetention: 7 * 24 * time.Hour, QueueMax: 10000, PushInterval: 30 * time.Second,
		IdleTimeout: 90 * time.Second, HandshakeTimeout: socket.DefaultHandshakeTimeout, WriteTimeout: 30 * time.Second,
		MaxGroupSize:             256,
		ReportsBeforeRestriction: 3, RestrictionLength: 24 * time.Hour,
		PreKeyLowWater: 10, ReorderWindow: 500 * time.Millisecond,
	}
}

func (l *Limits) withDefaults() {
	d := DefaultLimits()
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&l.BurstMessages, d.BurstMessages)
	setDur(&l.BurstWindow, d.BurstWindow)
	setInt(&l.HourlyMessages, d.HourlyMessages)
	setDur(&l.HourlyWindow, d.HourlyWindow)
	setInt(&l.NewConversations, d.NewConversations)
	setDur(&l.ConversationWindow, d.ConversationWindow)
	setDur(&l.QueueRetention, d.QueueRetention)
	setInt(&l.QueueMax, d.QueueMax)
	setDur(&l.PushInterval, d.PushInterval)
	setDur(&l.IdleTimeout, d.IdleTimeout)
	setDur(&l.HandshakeTimeout, d.HandshakeTimeout)
	setDur(&l.WriteTimeout, d.WriteTimeout)
	setInt(&l.MaxGroupSize, d.MaxGroupSize)
	setInt(&l.ReportsBeforeRestriction, d.ReportsBeforeRestriction)
	setDur(&l.RestrictionLength, d.RestrictionLength)
	setInt(&l.PreKeyLowWater, d.PreKeyLowWater)
	setDur(&l.ReorderWindow, d.ReorderWindow)
}

// Errors of the directory and control methods.
var (
	ErrUnknownUser   = errors.New("no such user")
	ErrUnknownDevice = errors.New("no such device")
	ErrUnknownGroup  = errors.New("no such group")
	ErrUserExists    = errors.New("user already exists")
	ErrWrongServer   = errors.New("jid is not on this gateway's server")
	ErrPrimaryDevice = errors.New("device 0 is the user's phone and cannot be removed")
	ErrNotEEA        = errors.New("user is not in the EEA")
	ErrClosed        = errors.New("gateway is closed")
)

// Gateway is Meta's interop gateway for one network.
type Gateway struct {
	cfg         Config
	st          *gwstore.Store
	log         zerolog.Logger
	callbacks   *callback.Client
	integrators map[uint16]Integrator

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	sessions map[jid.JID]*session
	closed   bool

	faults *Faults
	rates  *rateLimiter
	pushes *pusher
	// keyMu serializes key directory writes and prekey pops, so a one-time prekey is
	// handed out once even to concurrent fetchers.
	keyMu sync.Mutex
	// groupMu serializes group changes, so membership checks and the change agree.
	groupMu sync.Mutex
}

// New opens the gateway over db, creating or upgrading its tables.
func New(ctx context.Context, cfg Config, db *dbutil.Database, log zerolog.Logger) (*Gateway, error) {
	switch cfg.Network {
	case NetworkWhatsApp, NetworkMessenger:
	default:
		return nil, fmt.Errorf("unknown network %q", cfg.Network)
	}
	if cfg.Server != jid.ServerGateway && cfg.Server != jid.ServerMessenger {
		return nil, fmt.Errorf("server %q is not a Meta user server", cfg.Server)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits.withDefaults()
	integrators := make(map[uint16]Integrator, len(cfg.Integrators))
	for _, in := range cfg.Integrators {
		if in.ID == 0 || in.ID > 999 {
			return nil, fmt.Errorf("integrator id %d is not 1-3 digits", in.ID)
		}
		if _, dup := integrators[in.ID]; dup {
			return nil, fmt.Errorf("integrator id %d given twice", in.ID)
		}
		integrators[in.ID] = in
	}
	log = log.With().Str("component", "metasim_gateway").Str("network", cfg.Network).Logger()
	st := gwstore.New(db, cfg.Network, log)
	if err := st.Upgrade(ctx); err != nil {
		return nil, err
	}
	gctx, cancel := context.WithCancel(log.WithContext(context.Background()))
	g := &Gateway{
		cfg:         cfg,
		st:          st,
		log:         log,
		callbacks:   &callback.Client{HTTP: cfg.HTTPClient, Now: cfg.Now},
		integrators: integrators,
		ctx:         gctx,
		cancel:      cancel,
		sessions:    make(map[jid.JID]*session),
		faults:      newFaults(),
		rates:       newRateLimiter(),
	}
	g.pushes = newPusher(g)
	g.faults.g = g
	g.wg.Go(g.janitor)
	return g, nil
}

// Close drops every connection and waits for the gateway's goroutines. The state
// stays in the database; a new Gateway on it continues where this one stopped.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	sessions := make([]*session, 0, len(g.sessions))
	for _, s := range g.sessions {
		sessions = append(sessions, s)
	}
	g.mu.Unlock()
	g.cancel()
	for _, s := range sessions {
		s.closeNow()
	}
	g.pushes.stop()
	g.wg.Wait()
	return nil
}

// Faults is the fault injection of the control API (PROTOCOL.md Appendix).
func (g *Gateway) Faults() *Faults { return g.faults }

// Network is the gateway's network name.
func (g *Gateway) Network() string { return g.cfg.Network }

// Server is the Meta users' server of this gateway.
func (g *Gateway) Server() string { return g.cfg.Server }

// Integrator returns a registered integrator.
func (g *Gateway) Integrator(id uint16) (Integrator, bool) {
	in, ok := g.integrators[id]
	return in, ok
}

func (g *Gateway) now() time.Time { return g.cfg.Now() }

// ServeHTTP is the WebSocket endpoint at socket.Path: one call serves one connection
// until it ends.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != socket.Path {
		http.NotFound(w, r)
		return
	}
	if !g.track() {
		http.Error(w, "gateway is closed", http.StatusServiceUnavailable)
		return
	}
	defer g.wg.Done()
	g.serveSocket(w, r)
}

// track counts a goroutine that Close must wait for; false once closed.
func (g *Gateway) track() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// janitor expires queued stanzas older than the retention, every minute.
func (g *Gateway) janitor() {
	ticker := time.NewTicker(time.Minute)
	defer ticker.Stop()
	for {
		g.PruneQueues(g.ctx)
		select {
		case <-g.ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// PruneQueues drops queued stanzas older than Limits.QueueRetention now (the gateway
// also does it every minute).
func (g *Gateway) PruneQueues(ctx context.Context) {
	n, err := g.st.PruneQueues(ctx, g.now().Add(-g.cfg.Limits.QueueRetention))
	if err != nil && ctx.Err() == nil {
		g.log.Warn().Err(err).Msg("Failed to prune queues")
	} else if n > 0 {
		g.log.Info().Int64("count", n).Msg("Expired queued stanzas")
	}
}
