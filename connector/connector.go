// Package connector is the bridgev2 network connector of matrix-meta-interop: it turns
// each Matrix user into a third-party interop account ({integrator}-{number}@interop)
// on WhatsApp or Messenger, each 1:1 chat into a portal and each Meta user into a ghost.
// This file holds the connector itself; login.go the login flow, identity.go the proof
// that a Matrix user owns a number, client.go the per-login client and its connection
// (one interop.Account per login, a fresh login token minted for every dial),
// handleinterop.go what arrives from Meta, handlematrix.go what Matrix users send,
// pusher.go the push callback that connects an offline login.
//
// Its sub-packages do the pure parts: ids (ID mapping), msgconv (message conversion),
// callbacks (Meta's HTTP callbacks), mediahost (the media our users send, kept for
// Meta's proxy). They must not import this package.
package connector

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	up "go.mau.fi/util/configupgrade"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/database"

	matrixmetainterop "github.com/matrix-meta-interop/matrix-meta-interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/astxn"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/callbacks"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/mediahost"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/metrics"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/verify"
	bridgedb "github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore"
)

// DefaultTokenTTL is how long a login token minted for one dial stays valid. The
// gateway checks it once per connection, so it only bounds how long a leaked token
// (it lives in memory only) could open a new connection.
const DefaultTokenTTL = 24 * time.Hour

// mediaSweepInterval is how often blobs past the retention period are deleted.
const mediaSweepInterval = time.Hour

// InteropConnector serves both networks, WhatsApp and Messenger, from one bridge.
type InteropConnector struct {
	Bridge *bridgev2.Bridge
	Config config.NetworkConfig

	// Verifiers prove that a Matrix user owns the number they log in with; the first
	// one that vouches for a number wins (see identity.go).
	Verifiers []NumberVerifier
	// admin holds the number assignment commands and provisioning routes, when
	// identity.admin_assigned_numbers is on.
	admin *verify.Admin
	// tracker persists appservice transactions before they are acknowledged.
	tracker *astxn.Tracker

	// DB holds the bridge's own tables (login tokens); Store the Signal state of every
	// login's account. Both live in the bridge's database and are set up by Init.
	DB    *bridgedb.Database
	Store *sqlstore.Container
	// Callbacks answers Meta's auth and push callbacks; Start makes it and mounts it on
	// the appservice router when the Matrix connector has one.
	Callbacks *callbacks.Handler
	// Media keeps the encrypted media our users send and serves it to Meta's proxy
	// through Callbacks; Start makes it (nil before, and in tests without a bridge).
	Media *mediahost.Hosting
	// TokenTTL is the lifetime of each dial's login token; 0 means DefaultTokenTTL.
	TokenTTL time.Duration

	// metrics counts what the bridge does (metrics.go); metricsServer serves it when
	// metrics.enabled is on.
	metrics       *metrics.Metrics
	metricsServer *metrics.Server

	// direct is on when bridgev2's direct media is enabled (directmedia.go).
	direct directMedia

	validated bool
	// started is closed once Start has upgraded the tables; logins wait for it, since
	// bridgev2 serves provisioning (and login commands) before the network starts.
	started     chan struct{}
	startedOnce sync.Once
	// queueRemoteEvent replaces bridgev2's queue in tests that have no homeserver.
	queueRemoteEvent func(*bridgev2.UserLogin, bridgev2.RemoteEvent) bridgev2.EventHandlingResult
}

var (
	_ bridgev2.NetworkConnector        = (*InteropConnector)(nil)
	_ bridgev2.ConfigValidatingNetwork = (*InteropConnector)(nil)
	_ callbacks.Pusher                 = (*InteropConnector)(nil)
	_ bridgev2.DirectMediableNetwork   = (*InteropConnector)(nil)
)

// GetName names the bridge. It is called before the config is loaded, so it must not
// depend on it.
func (c *InteropConnector) GetName() bridgev2.BridgeName {
	return bridgev2.BridgeName{
		DisplayName:          "Meta (WhatsApp & Messenger)",
		NetworkURL:           "https://github.com/matrix-meta-interop/matrix-meta-interop",
		NetworkID:            "metainterop",
		BeeperBridgeType:     "metainterop",
		DefaultPort:          29350,
		DefaultCommandPrefix: "!meta",
	}
}

// GetConfig gives mxmain the commented example, the struct to fill and the upgrader.
func (c *InteropConnector) GetConfig() (example string, data any, upgrader up.Upgrader) {
	return matrixmetainterop.ExampleConfig, &c.Config, config.Upgrader(matrixmetainterop.ExampleConfig)
}

// ValidateConfig refuses to start with a network section that cannot work; mxmain
// calls it after loading the config and before Init.
func (c *InteropConnector) ValidateConfig() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	c.validated = true
	return nil
}

// GetDBMetaTypes names the JSON metadata the connector keeps in bridgev2's tables.
func (c *InteropConnector) GetDBMetaTypes() database.MetaTypes {
	return database.MetaTypes{
		UserLogin: func() any { return &UserLoginMetadata{} },
		Message:   func() any { return &MessageMetadata{} },
	}
}

// GetCapabilities are the network-wide capabilities; per-room ones are in client.go.
// Groups can be created from Matrix (groups_matrix.go).
func (c *InteropConnector) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{
		Provisioning: bridgev2.ProvisioningCapabilities{GroupCreation: groupCreationCapabilities()},
	}
}

// GetBridgeInfoVersion is bumped when m.bridge or room capabilities change shape, so
// bridgev2 resends them to every room.
func (c *InteropConnector) GetBridgeInfoVersion() (info, capabilities int) {
	// capabilities 2: files and their size limits (media_features.go).
	return 1, 2
}

// Init keeps the bridge, opens the connector's tables and the Signal store on the
// bridge's database (upgraded in Start) and fills the verifiers; it must not block.
func (c *InteropConnector) Init(bridge *bridgev2.Bridge) {
	c.Bridge = bridge
	c.started = make(chan struct{})
	c.DB = bridgedb.New(bridge.DB.Database, bridge.Log.With().Str("db_section", "interop_bridge").Logger())
	c.Store = sqlstore.New(bridge.DB.Database, bridge.Log.With().Str("db_section", "interop_store").Logger())
	c.requireSynchronousPortals(bridge)
	c.attachTracker(bridge)
	makeSendsIdempotent(bridge, c.markRefused)
	c.setupMetrics(bridge)
	c.Verifiers = append(c.Verifiers, c.configuredVerifiers(bridge)...)
	c.registerSafetyCommands(bridge)
	if c.Config.Identity.AdminAssignedNumbers {
		c.admin = &verify.Admin{DB: c.DB, Networks: c.Config.EnabledNetworks()}
		if proc, ok := bridge.Commands.(*commands.Processor); ok {
			proc.AddHandlers(c.admin.Commands()...)
		}
	}
}

// Start validates the config if mxmain did not (tests, other mains) and tells the
// admin what Meta must be told and what is unsafe.
func (c *InteropConnector) Start(ctx context.Context) error {
	if !c.validated {
		if err := c.ValidateConfig(); err != nil {
			return fmt.Errorf("failed to validate network config: %w", err)
		}
	}
	log := zerolog.Ctx(ctx)
	if c.Bridge != nil {
		if err := c.startDatabase(ctx); err != nil {
			return err
		}
		c.startTracker()
		c.startMediaSweeper()
		c.startedOnce.Do(func() { close(c.started) })
	}
	if err := c.startMetrics(ctx); err != nil {
		return err
	}
	for _, name := range c.Config.EnabledNetworks() {
		s, _ := c.Config.Section(name)
		log.Info().
			Str("network", name).
			Str("gateway_url", s.GatewayURL).
			Int("integrator_id", s.IntegratorID).
			Msg("Network enabled")
	}
	log.Info().
		Str("callback_base_url", c.CallbackBaseURL()).
		Msg("Register this URL with Meta as the callback base and media origin")
	if c.Media != nil {
		store, _ := filepath.Abs(c.Config.Media.Store())
		log.Info().Str("store_path", store).Dur("retention", c.Config.Media.Retention()).
			Msg("Hosting the media your users send in this folder; back it up with the database")
	}
	if c.Config.Identity.AllowUnverifiedNumbers {
		log.Warn().Msg("!!! identity.allow_unverified_numbers is ON: any Matrix user can log in " +
			"with ANY phone number and receive that number's chats. Use this only for tests and demos. !!!")
	}
	c.warnMissingVerifiers(ctx)
	if c.admin != nil && c.Bridge != nil {
		// bridgev2 builds the provisioning router when the Matrix side starts.
		if mx, ok := c.Bridge.Matrix.(bridgev2.MatrixConnectorWithProvisioning); ok && mx.GetProvisioning() != nil {
			c.admin.RegisterProvisioning(mx.GetProvisioning())
		}
	}
	return nil
}

// startDatabase upgrades the connector's tables and the Signal store and mounts the
// callback handler, which needs the token table.
func (c *InteropConnector) startDatabase(ctx context.Context) error {
	if err := c.DB.Upgrade(ctx); err != nil {
		return fmt.Errorf("failed to upgrade the bridge's interop tables: %w", err)
	}
	if err := c.Store.Upgrade(ctx); err != nil {
		return fmt.Errorf("failed to upgrade the Signal store: %w", err)
	}
	media, err := c.newMediaHosting()
	if err != nil {
		return err
	}
	c.Media = media
	h, err := c.newCallbackHandler()
	if err != nil {
		return err
	}
	c.Callbacks = h
	if mx, ok := c.Bridge.Matrix.(bridgev2.MatrixConnectorWithServer); ok {
		h.Mount(mx.GetRouter())
	} else {
		zerolog.Ctx(ctx).Warn().Msg("The Matrix connector has no HTTP server: Meta's callbacks cannot reach this bridge")
	}
	return nil
}

// newCallbackHandler serves the enabled networks' callbacks with the token table as
// the judge of tokens and this connector as the pusher.
func (c *InteropConnector) newCallbackHandler() (*callbacks.Handler, error) {
	var networks []callbacks.Network
	for _, name := range c.Config.EnabledNetworks() {
		s, _ := c.Config.Section(name)
		networks = append(networks, callbacks.Network{Name: name, IntegratorID: uint16(s.IntegratorID), Secret: []byte(s.CallbackSecret)})
	}
	cfg := callbacks.Config{
		Networks: networks,
		Tokens:   c.DB,
		Pusher:   c,
		Log:      c.Bridge.Log.With().Str("component", "interop_callbacks").Logger(),
	}
	if c.Media != nil {
		cfg.Media = c.Media
	}
	if base, err := url.Parse(c.CallbackBaseURL()); err == nil {
		cfg.PublicPathPrefix = base.EscapedPath()
	}
	h, err := callbacks.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to set up the callback handler: %w", err)
	}
	return h, nil
}

// newMediaHosting keeps hosted media in the configured folder (created on first use),
// recorded in the bridge's tables, under the callback base URL Meta fetches from.
func (c *InteropConnector) newMediaHosting() (*mediahost.Hosting, error) {
	log := c.Bridge.Log.With().Str("component", "media_host").Logger()
	store, err := mediahost.NewFileStore(c.Config.Media.Store())
	if err != nil {
		return nil, fmt.Errorf("failed to set up the media store: %w", err)
	}
	h, err := mediahost.New(mediahost.Config{BaseURL: c.CallbackBaseURL(), Store: store, Records: c.DB, Log: log})
	if err != nil {
		return nil, fmt.Errorf("failed to set up media hosting: %w", err)
	}
	return h, nil
}

// startMediaSweeper deletes hosted media past the retention period, every hour until
// the bridge stops.
func (c *InteropConnector) startMediaSweeper() {
	if c.Media == nil || c.Bridge.BackgroundCtx == nil {
		return
	}
	ctx := c.Bridge.Log.WithContext(c.Bridge.BackgroundCtx)
	go c.Media.SweepLoop(ctx, mediaSweepInterval, c.Config.Media.Retention())
}

func (c *InteropConnector) tokenTTL() time.Duration {
	if c.TokenTTL > 0 {
		return c.TokenTTL
	}
	return DefaultTokenTTL
}

// CallbackBaseURL is where Meta reaches this bridge: the configured URL, or else the
// appservice's public address.
func (c *InteropConnector) CallbackBaseURL() string {
	if c.Config.CallbackBaseURL != "" {
		return c.Config.CallbackBaseURL
	}
	if c.Bridge != nil {
		if mx, ok := c.Bridge.Matrix.(bridgev2.MatrixConnectorWithServer); ok {
			return mx.GetPublicAddress()
		}
	}
	return ""
}

// section returns the config of an enabled network.
func (c *InteropConnector) section(network ids.Network) (*config.NetworkSection, error) {
	s, ok := c.Config.Section(string(network))
	if !ok {
		return nil, fmt.Errorf("unknown network %q", network)
	}
	if !s.Enabled {
		return nil, fmt.Errorf("%w: %s", ErrNetworkDisabled, network)
	}
	return s, nil
}

// LoadUserLogin attaches the client; it runs under bridgev2's cache lock, so it only
// checks the stored IDs and connects nothing.
func (c *InteropConnector) LoadUserLogin(ctx context.Context, login *bridgev2.UserLogin) error {
	network, account, err := ids.ParseUserLoginID(login.ID)
	if err != nil {
		return fmt.Errorf("failed to parse login id: %w", err)
	}
	meta, ok := login.Metadata.(*UserLoginMetadata)
	if !ok {
		return fmt.Errorf("login has metadata of type %T, not *UserLoginMetadata", login.Metadata)
	}
	if meta.Network != network || meta.InteropJID != account {
		// The ID is the primary key; metadata that disagrees was written by a bug.
		return fmt.Errorf("login metadata (%s, %s) does not match its id %s", meta.Network, meta.InteropJID, login.ID)
	}
	login.Client = newInteropClient(c, login, network, account)
	return nil
}

// waitStarted waits until Start has set up the connector's tables (at once when the
// connector was never initialized with a bridge, as in some tests).
func (c *InteropConnector) waitStarted(ctx context.Context) error {
	if c.started == nil {
		return nil
	}
	select {
	case <-c.started:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the bridge is still starting: %w", ctx.Err())
	}
}
