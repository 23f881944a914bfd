package metasim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/control"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

// certBackdate starts a certificate's validity a little in the past, so that a
// client whose clock lags the simulator's still accepts the chain.
const certBackdate = time.Hour

// Simulator is the whole of Meta's side: one gateway per enabled network, the media
// hosts, the simulated users and the control API.
type Simulator struct {
	cfg Config
	// base is the caller's logger, for the components (which name themselves); log is
	// the simulator's own.
	base zerolog.Logger
	log  zerolog.Logger
	db   *openedDB

	networks map[string]*network
	signal   *sqlstore.Container
	media    *media.Host
	proxy    *media.Proxy
	control  *control.Server

	mu        sync.Mutex
	started   bool
	closed    bool
	listeners []*listener
	addrs     Addrs
}

// network is one enabled network's gateway and keys.
type network struct {
	name string
	cfg  NetworkConfig
	keys networkKeys
	gw   *gateway.Gateway
	// users are the network's simulated Meta users.
	users *simuser.Manager
}

// listener is one HTTP server on its socket.
type listener struct {
	name string
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Addrs are the addresses actually listened on (host:port), known after Start.
type Addrs struct {
	Control  string
	Media    string
	Gateways map[string]string // network name → host:port
}

// New opens the database, loads or generates each enabled network's keys and opens
// its gateway. Nothing listens until Start.
func New(ctx context.Context, cfg Config, log zerolog.Logger) (*Simulator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	base := log
	log = log.With().Str("component", "metasim").Logger()
	// The components derive their loggers from ctx's, adding their own names.
	ctx = base.WithContext(ctx)
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create the data dir: %w", err)
		}
	}
	s := &Simulator{cfg: cfg, base: base, log: log, networks: make(map[string]*network)}
	db, err := openDatabase(cfg, base)
	if err != nil {
		return nil, err
	}
	s.db = db
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()
	if err := s.openMedia(ctx); err != nil {
		return nil, err
	}
	// One container for every simulated device of both networks: it caches sessions
	// per account, and the devices' inbox rows join its transactions.
	s.signal = sqlstore.New(s.db.db, base.With().Str("component", "simuser_store").Logger())
	for _, name := range Networks() {
		ncfg := *cfg.Network(name)
		if !ncfg.Enabled {
			continue
		}
		n, err := s.openNetwork(ctx, name, ncfg)
		if err != nil {
			return nil, fmt.Errorf("failed to start the %s gateway: %w", name, err)
		}
		s.networks[name] = n
	}
	s.control = control.New(control.Config{
		Token:    cfg.Control.Token,
		Gateways: s.gateways(),
		Users:    s.managers(),
		Status:   s.status,
		Media:    s.media,
	}, base.With().Str("component", "control").Logger())
	ok = true
	return s, nil
}

func (s *Simulator) openNetwork(ctx context.Context, name string, ncfg NetworkConfig) (*network, error) {
	keys, err := loadOrCreateKeys(s.cfg.DataDir, name)
	if err != nil {
		return nil, err
	}
	validity := time.Duration(ncfg.CertValidity)
	if validity <= 0 {
		validity = 30 * 24 * time.Hour
	}
	// A fresh chain at every start: the intermediate key is thrown away after signing,
	// and the chain is cheap; only the root must stay the same.
	now := time.Now()
	chain, err := socket.GenerateCertChain(keys.root, keys.static.Public, now.Add(-certBackdate), now.Add(validity))
	if err != nil {
		return nil, fmt.Errorf("failed to make the certificate chain: %w", err)
	}
	gcfg := gateway.Config{
		Network:    name,
		Server:     jid.ServerGateway,
		Product:    waWa6.ClientPayload_INTEROP,
		StaticKey:  keys.static,
		CertChain:  chain,
		RequireEEA: ncfg.RequireEEA,
		Limits:     ncfg.Limits.Limits(),
		MediaConn:  s.mediaConn,
	}
	if name == gateway.NetworkMessenger {
		gcfg.Server, gcfg.Product = jid.ServerMessenger, waWa6.ClientPayload_INTEROP_MSGR
	}
	for _, in := range ncfg.Integrators {
		gcfg.Integrators = append(gcfg.Integrators, gateway.Integrator{
			ID: in.ID, Name: in.Name, CallbackBase: in.CallbackBase, MediaOrigin: in.MediaOrigin,
			CallbackSecret: []byte(in.CallbackSecret),
		})
	}
	gw, err := gateway.New(ctx, gcfg, s.db.db, s.base)
	if err != nil {
		return nil, err
	}
	n := &network{name: name, cfg: ncfg, keys: keys, gw: gw}
	ucfg := simuser.Config{
		Gateway: gw,
		Media:   s.media,
		Proxy:   s.proxy,
		Stores:  simuser.SQLStores(s.signal),
		DB:      s.db.db,
		Log:     s.base,
	}
	if s.cfg.DataDir != "" && s.cfg.Database != MemoryDatabase {
		ucfg.MediaDir = filepath.Join(s.cfg.DataDir, "received-media", name)
	}
	if n.users, err = simuser.New(ctx, ucfg); err != nil {
		_ = gw.Close()
		return nil, fmt.Errorf("failed to set up the simulated users: %w", err)
	}
	return n, nil
}

// openMedia opens Meta's media hosts and proxy. Blobs live in {data_dir}/media, or
// in memory when there is no data dir.
func (s *Simulator) openMedia(ctx context.Context) error {
	hcfg := media.HostConfig{
		DB:          s.db.db,
		Scheme:      "http",
		TokenTTL:    time.Duration(s.cfg.Media.TokenTTL),
		MaxBlobSize: s.cfg.Media.MaxBlobSize,
		Log:         s.base.With().Str("component", "media").Logger(),
	}
	if s.cfg.DataDir != "" && s.cfg.Database != MemoryDatabase {
		hcfg.Dir = filepath.Join(s.cfg.DataDir, "media")
	}
	if s.cfg.Media.PublicHost != "" {
		hcfg.Hosts = []string{s.cfg.Media.PublicHost}
	}
	host, err := media.NewHost(ctx, hcfg)
	if err != nil {
		return fmt.Errorf("failed to open the media hosts: %w", err)
	}
	s.media = host
	s.proxy = media.NewProxy(media.ProxyConfig{MaxBlobSize: s.cfg.Media.MaxBlobSize})
	return nil
}

// mediaConn is the gateways' media_conn hook. The host is opened before the
// gateways, so it is always there.
func (s *Simulator) mediaConn(account jid.JID) (string, time.Duration, []string) {
	return s.media.MediaConn(account)
}

func (s *Simulator) managers() map[string]*simuser.Manager {
	out := make(map[string]*simuser.Manager, len(s.networks))
	for name, n := range s.networks {
		out[name] = n.users
	}
	return out
}

func (s *Simulator) gateways() map[string]*gateway.Gateway {
	out := make(map[string]*gateway.Gateway, len(s.networks))
	for name, n := range s.networks {
		out[name] = n.gw
	}
	return out
}

// Start opens the listeners (port 0 picks a free port; Addrs tells which) and serves
// until Close. ctx only bounds the start.
func (s *Simulator) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("simulator is closed")
	case s.started:
		return errors.New("simulator already started")
	}
	s.started = true
	s.addrs.Gateways = make(map[string]string)
	var lc net.ListenConfig
	listen := func(name, addr string, h http.Handler) (string, error) {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return "", fmt.Errorf("failed to listen on %s for the %s: %w", addr, name, err)
		}
		l := &listener{name: name, ln: ln, done: make(chan struct{}), srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return s.log.WithContext(context.Background()) },
		}}
		s.listeners = append(s.listeners, l)
		go func() {
			defer close(l.done)
			if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Err(err).Str("listener", name).Msg("Listener stopped")
			}
		}()
		return ln.Addr().String(), nil
	}
	var err error
	if s.addrs.Control, err = listen("control API", s.cfg.Control.Listen, s.control); err != nil {
		s.stopListeners()
		return err
	}
	if s.addrs.Media, err = listen("media hosts", s.cfg.Media.Listen, s.media); err != nil {
		s.stopListeners()
		return err
	}
	if s.cfg.Media.PublicHost == "" {
		s.media.SetHosts([]string{s.addrs.Media})
	}
	for _, name := range Networks() {
		n := s.networks[name]
		if n == nil {
			continue
		}
		addr, err := listen(name+" gateway", n.cfg.Listen, n.gw)
		if err != nil {
			s.stopListeners()
			return err
		}
		s.addrs.Gateways[name] = addr
	}
	// The simulated devices that exist from an earlier run connect again, with the
	// sessions their stores kept.
	for _, name := range Networks() {
		if n := s.networks[name]; n != nil {
			if err := n.users.Start(ctx); err != nil {
				s.stopListeners()
				return fmt.Errorf("failed to reconnect the simulated %s users: %w", name, err)
			}
		}
	}
	s.log.Info().Str("control", s.addrs.Control).Str("media", s.addrs.Media).Any("gateways", s.addrs.Gateways).Msg("Simulator started")
	return nil
}

// Users returns a network's simulated users, nil when the network is off.
func (s *Simulator) Users(network string) *simuser.Manager {
	if n := s.networks[network]; n != nil {
		return n.users
	}
	return nil
}

// Addrs returns the addresses listened on (empty before Start).
func (s *Simulator) Addrs() Addrs {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.addrs
	out.Gateways = make(map[string]string, len(s.addrs.Gateways))
	for k, v := range s.addrs.Gateways {
		out.Gateways[k] = v
	}
	return out
}

// GatewayURL is the WebSocket URL of a network's gateway ("" before Start or when the
// network is off).
func (s *Simulator) GatewayURL(network string) string {
	addr := s.Addrs().Gateways[network]
	if addr == "" {
		return ""
	}
	return "ws://" + addr + socket.Path
}

// ControlURL is the base URL of the control API ("" before Start).
func (s *Simulator) ControlURL() string {
	addr := s.Addrs().Control
	if addr == "" {
		return ""
	}
	return "http://" + addr
}

// Gateway returns a network's gateway, nil when the network is off.
func (s *Simulator) Gateway(network string) *gateway.Gateway {
	if n := s.networks[network]; n != nil {
		return n.gw
	}
	return nil
}

// RootPublicKey is the Ed25519 key a network's certificate chain leads to, nil when
// the network is off.
func (s *Simulator) RootPublicKey(network string) ed25519.PublicKey {
	if n := s.networks[network]; n != nil {
		return n.keys.root.Public().(ed25519.PublicKey)
	}
	return nil
}

// RootPublicKeyFile is where a network's root public key was written ("" in memory).
func (s *Simulator) RootPublicKeyFile(network string) string {
	if n := s.networks[network]; n != nil {
		return n.keys.pubFile
	}
	return ""
}

// Database says which database is in use (a path, or a DSN without its password).
func (s *Simulator) Database() string { return s.db.where }

// status is what the control API reports about the simulator itself.
func (s *Simulator) status() control.Status {
	addrs := s.Addrs()
	st := control.Status{Control: addrs.Control, Media: addrs.Media}
	for _, name := range Networks() {
		n := s.networks[name]
		if n == nil {
			continue
		}
		ns := control.NetworkStatus{
			Name:          name,
			Server:        n.gw.Server(),
			RootPublicKey: n.keys.root.Public().(ed25519.PublicKey),
			RootKeyFile:   n.keys.pubFile,
			RequireEEA:    n.cfg.RequireEEA,
		}
		if addr := addrs.Gateways[name]; addr != "" {
			ns.GatewayURL = "ws://" + addr + socket.Path
		}
		for _, in := range n.cfg.Integrators {
			ns.Integrators = append(ns.Integrators, control.IntegratorStatus{
				ID: in.ID, Name: in.Name, CallbackBase: in.CallbackBase, MediaOrigin: in.MediaOrigin,
			})
		}
		st.Networks = append(st.Networks, ns)
	}
	return st
}

// Close stops the listeners, drops every connection, and closes the database (a
// memory-mode database is deleted). It is safe to call more than once.
func (s *Simulator) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.control != nil {
		s.control.Close()
	}
	s.stopListeners()
	s.mu.Unlock()
	var errs []error
	for _, name := range Networks() {
		if n := s.networks[name]; n != nil {
			if err := n.users.Close(); err != nil {
				errs = append(errs, fmt.Errorf("failed to stop the simulated %s users: %w", name, err))
			}
			if err := n.gw.Close(); err != nil {
				errs = append(errs, fmt.Errorf("failed to close the %s gateway: %w", name, err))
			}
		}
	}
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.log.Info().Msg("Simulator stopped")
	return errors.Join(errs...)
}

// stopListeners closes every listener and its idle connections; the gateways' hijacked
// WebSockets are dropped by closing the gateways. Called with s.mu held.
func (s *Simulator) stopListeners() {
	for _, l := range s.listeners {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := l.srv.Shutdown(ctx); err != nil {
			// Long-polls still running after the grace period are cut.
			_ = l.srv.Close()
		}
		cancel()
		<-l.done
	}
	s.listeners = nil
}
