package metasim

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
)

// MemoryDatabase as Config.Database keeps everything in a throwaway database that
// Close deletes (for tests and one-off demos).
const MemoryDatabase = ":memory:"

// Config is the simulator's configuration file (YAML).
type Config struct {
	// DataDir holds the SQLite database and the generated keys. LoadConfig makes a
	// relative path relative to the config file's folder. Empty: nothing is written
	// to disk (keys are made at every start), which needs Database to be
	// MemoryDatabase or a PostgreSQL DSN.
	DataDir string `yaml:"data_dir"`
	// Database is empty for SQLite at {data_dir}/metasim.db, a path to another SQLite
	// file, MemoryDatabase, or a postgres:// DSN.
	Database string `yaml:"database"`

	Control  ControlConfig  `yaml:"control"`
	Media    MediaConfig    `yaml:"media"`
	Networks NetworksConfig `yaml:"networks"`
	Log      LogConfig      `yaml:"log"`
}

// ControlConfig is the control API's listener.
type ControlConfig struct {
	Listen string `yaml:"listen"`
	// Token is the bearer token every control request must carry.
	Token string `yaml:"token"`
}

// MediaConfig is Meta's media hosts (PROTOCOL.md section 7).
type MediaConfig struct {
	Listen string `yaml:"listen"`
	// PublicHost is the host[:port] clients are told to download from (media_conn);
	// empty means the address actually listened on.
	PublicHost string `yaml:"public_host"`
	// TokenTTL is how long a media_conn credential is valid; default 1h.
	TokenTTL Duration `yaml:"token_ttl"`
	// MaxBlobSize caps uploads and proxy fetches in bytes; default 100 MiB.
	MaxBlobSize int64 `yaml:"max_blob_size"`
}

// NetworksConfig holds one gateway per network.
type NetworksConfig struct {
	WhatsApp  NetworkConfig `yaml:"whatsapp"`
	Messenger NetworkConfig `yaml:"messenger"`
}

// NetworkConfig is one network's gateway.
type NetworkConfig struct {
	Enabled bool   `yaml:"enabled"`
	Listen  string `yaml:"listen"`
	// CertValidity is how long the certificate chain made at each start stays valid.
	CertValidity Duration `yaml:"cert_validity"`
	// RequireEEA refuses non-EEA numbers (PROTOCOL.md section 1).
	RequireEEA  bool               `yaml:"require_eea"`
	Integrators []IntegratorConfig `yaml:"integrators"`
	Limits      LimitsConfig       `yaml:"limits"`
}

// IntegratorConfig is one provider with a signed agreement (PROTOCOL.md section 1).
type IntegratorConfig struct {
	ID           uint16 `yaml:"id"`
	Name         string `yaml:"name"`
	CallbackBase string `yaml:"callback_base"`
	MediaOrigin  string `yaml:"media_origin"`
	// CallbackSecret signs callbacks and media fetches; its UTF-8 bytes are the key,
	// so the provider's config holds the same string.
	CallbackSecret string `yaml:"callback_secret"`
}

// LimitsConfig are the gateway's numbers; zero or absent fields take the protocol's
// values (gateway.DefaultLimits).
type LimitsConfig struct {
	BurstMessages            int      `yaml:"burst_messages"`
	BurstWindow              Duration `yaml:"burst_window"`
	HourlyMessages           int      `yaml:"hourly_messages"`
	HourlyWindow             Duration `yaml:"hourly_window"`
	NewConversations         int      `yaml:"new_conversations"`
	ConversationWindow       Duration `yaml:"conversation_window"`
	QueueRetention           Duration `yaml:"queue_retention"`
	QueueMax                 int      `yaml:"queue_max"`
	PushInterval             Duration `yaml:"push_interval"`
	IdleTimeout              Duration `yaml:"idle_timeout"`
	HandshakeTimeout         Duration `yaml:"handshake_timeout"`
	WriteTimeout             Duration `yaml:"write_timeout"`
	MaxGroupSize             int      `yaml:"max_group_size"`
	ReportsBeforeRestriction int      `yaml:"reports_before_restriction"`
	RestrictionLength        Duration `yaml:"restriction_length"`
	PreKeyLowWater           int      `yaml:"prekey_low_water"`
	ReorderWindow            Duration `yaml:"reorder_window"`
}

// LogConfig sets the log output.
type LogConfig struct {
	// Level is a zerolog level: trace, debug, info, warn, error.
	Level string `yaml:"level"`
	// JSON writes JSON lines instead of the human console format.
	JSON bool `yaml:"json"`
}

// Duration is a time.Duration written as "90s", "24h" in YAML.
type Duration time.Duration

// MarshalYAML writes the duration in Go's notation.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML reads Go's notation ("1h30m").
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("duration must be a string like \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("failed to parse duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Limits converts to the gateway's type.
func (l LimitsConfig) Limits() gateway.Limits {
	return gateway.Limits{
		BurstMessages: l.BurstMessages, BurstWindow: time.Duration(l.BurstWindow),
		HourlyMessages: l.HourlyMessages, HourlyWindow: time.Duration(l.HourlyWindow),
		NewConversations: l.NewConversations, ConversationWindow: time.Duration(l.ConversationWindow),
		QueueRetention: time.Duration(l.QueueRetention), QueueMax: l.QueueMax,
		PushInterval:     time.Duration(l.PushInterval),
		IdleTimeout:      time.Duration(l.IdleTimeout),
		HandshakeTimeout: time.Duration(l.HandshakeTimeout),
		WriteTimeout:     time.Duration(l.WriteTimeout),
		MaxGroupSize:     l.MaxGroupSize, ReportsBeforeRestriction: l.ReportsBeforeRestriction,
		RestrictionLength: time.Duration(l.RestrictionLength),
		PreKeyLowWater:    l.PreKeyLowWater,
		ReorderWindow:     time.Duration(l.ReorderWindow),
	}
}

func limitsConfigFrom(l gateway.Limits) LimitsConfig {
	return LimitsConfig{
		BurstMessages: l.BurstMessages, BurstWindow: Duration(l.BurstWindow),
		HourlyMessages: l.HourlyMessages, HourlyWindow: Duration(l.HourlyWindow),
		NewConversations: l.NewConversations, ConversationWindow: Duration(l.ConversationWindow),
		QueueRetention: Duration(l.QueueRetention), QueueMax: l.QueueMax,
		PushInterval:     Duration(l.PushInterval),
		IdleTimeout:      Duration(l.IdleTimeout),
		HandshakeTimeout: Duration(l.HandshakeTimeout),
		WriteTimeout:     Duration(l.WriteTimeout),
		MaxGroupSize:     l.MaxGroupSize, ReportsBeforeRestriction: l.ReportsBeforeRestriction,
		RestrictionLength: Duration(l.RestrictionLength),
		PreKeyLowWater:    l.PreKeyLowWater,
		ReorderWindow:     Duration(l.ReorderWindow),
	}
}

// Network returns the named network's configuration (gateway.NetworkWhatsApp or
// gateway.NetworkMessenger).
func (c *Config) Network(name string) *NetworkConfig {
	switch name {
	case gateway.NetworkWhatsApp:
		return &c.Networks.WhatsApp
	case gateway.NetworkMessenger:
		return &c.Networks.Messenger
	}
	return nil
}

// Networks lists the network names in a fixed order.
func Networks() []string { return []string{gateway.NetworkWhatsApp, gateway.NetworkMessenger} }

// DefaultConfig is a working configuration on 127.0.0.1 with fresh random secrets: the
// control token and one integrator (id 1) per network whose callbacks go to a bridge
// on 127.0.0.1:29350 (the bridge's default appservice listener).
func DefaultConfig() Config {
	network := func(listen string) NetworkConfig {
		// Each network its own secret: the bridge tells the networks' callbacks apart
		// by the secret that signs them, as with Meta's two agreements.
		secret := randomHex(32)
		return NetworkConfig{
			Enabled:      true,
			Listen:       listen,
			CertValidity: Duration(30 * 24 * time.Hour),
			RequireEEA:   true,
			Integrators: []IntegratorConfig{{
				ID: 1, Name: "Matrix bridge",
				CallbackBase:   "http://127.0.0.1:29350",
				MediaOrigin:    "http://127.0.0.1:29350",
				CallbackSecret: secret,
			}},
			Limits: limitsConfigFrom(gateway.DefaultLimits()),
		}
	}
	return Config{
		DataDir: "metasim-data",
		Control: ControlConfig{Listen: "127.0.0.1:29340", Token: randomHex(32)},
		Media: MediaConfig{Listen: "127.0.0.1:29343", TokenTTL: Duration(media.DefaultTokenTTL),
			MaxBlobSize: media.DefaultMaxBlobSize},
		Networks: NetworksConfig{
			WhatsApp:  network("127.0.0.1:29341"),
			Messenger: network("127.0.0.1:29342"),
		},
		Log: LogConfig{Level: "info"},
	}
}

const configHeader = `# metasim: the simulator of Meta's side of the interop protocol (PROTOCOL.md).
# Generated with fresh secrets: the control token and the integrators' callback
# secrets below are credentials; keep this file private (mode 0600).
#
# database: empty = SQLite at {data_dir}/metasim.db; ":memory:" = a throwaway database
# deleted at shutdown; "postgres://user@host/db?sslmode=disable" = PostgreSQL.
# Keys: each network's Noise static key and Ed25519 root key are generated on the first
# start in data_dir; the root PUBLIC key is written to {data_dir}/{network}-root.pub
# (base64) for the bridge's configuration.
`

// WriteDefaultConfig writes DefaultConfig to path (mode 0600, since it holds
// secrets) and returns it. It refuses to overwrite an existing file.
func WriteDefaultConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	var buf bytes.Buffer
	buf.WriteString(configHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&cfg); err != nil {
		return Config{}, fmt.Errorf("failed to encode the default config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return Config{}, fmt.Errorf("failed to encode the default config: %w", err)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return Config{}, fmt.Errorf("failed to create the config's directory: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Config{}, fmt.Errorf("failed to create the config file: %w", err)
	}
	if _, err = f.Write(buf.Bytes()); err != nil {
		_ = f.Close()
		return Config{}, fmt.Errorf("failed to write the config file: %w", err)
	}
	if err = f.Close(); err != nil {
		return Config{}, fmt.Errorf("failed to write the config file: %w", err)
	}
	return cfg, nil
}

// LoadConfig reads and validates a configuration file. Unknown keys are refused, so a
// typo does not silently fall back to a default. Relative data_dir and SQLite paths
// are taken relative to the file's folder, so the simulator finds its keys whatever
// the working directory.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("failed to read the config file: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, err
	}
	base := filepath.Dir(path)
	if cfg.DataDir != "" && !filepath.IsAbs(cfg.DataDir) {
		cfg.DataDir = filepath.Join(base, cfg.DataDir)
	}
	if cfg.Database != "" && cfg.Database != MemoryDatabase && !isPostgres(cfg.Database) && !filepath.IsAbs(cfg.Database) {
		cfg.Database = filepath.Join(base, cfg.Database)
	}
	return cfg, nil
}

// ParseConfig decodes and validates YAML configuration.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("failed to parse the config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks the configuration for mistakes that would otherwise surface late.
func (c *Config) Validate() error {
	var errs []error
	if c.Control.Listen == "" {
		errs = append(errs, errors.New("control.listen is empty"))
	} else if err := checkListen(c.Control.Listen); err != nil {
		errs = append(errs, fmt.Errorf("control.listen: %w", err))
	}
	if len(c.Control.Token) < 16 {
		errs = append(errs, errors.New("control.token must be at least 16 characters"))
	}
	if c.DataDir == "" && c.Database != MemoryDatabase && !isPostgres(c.Database) {
		errs = append(errs, errors.New("data_dir is empty: set it, or use database \":memory:\" or a PostgreSQL DSN"))
	}
	if c.Media.Listen != "" {
		if err := checkListen(c.Media.Listen); err != nil {
			errs = append(errs, fmt.Errorf("media.listen: %w", err))
		}
	}
	if c.Media.TokenTTL < 0 || c.Media.MaxBlobSize < 0 {
		errs = append(errs, errors.New("media.token_ttl and media.max_blob_size must not be negative"))
	}
	enabled := 0
	for _, name := range Networks() {
		n := c.Network(name)
		if !n.Enabled {
			continue
		}
		enabled++
		if err := n.validate(); err != nil {
			errs = append(errs, fmt.Errorf("networks.%s: %w", name, err))
		}
	}
	if enabled == 0 {
		errs = append(errs, errors.New("no network is enabled"))
	}
	if enabled > 0 && c.Media.Listen == "" {
		errs = append(errs, errors.New("media.listen is empty"))
	}
	if c.Log.Level != "" {
		if _, err := parseLevel(c.Log.Level); err != nil {
			errs = append(errs, fmt.Errorf("log.level: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (n *NetworkConfig) validate() error {
	var errs []error
	if err := checkListen(n.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if n.CertValidity < 0 {
		errs = append(errs, errors.New("cert_validity is negative"))
	}
	seen := map[uint16]bool{}
	for i, in := range n.Integrators {
		where := fmt.Sprintf("integrators[%d]", i)
		switch {
		case in.ID == 0 || in.ID > 999:
			errs = append(errs, fmt.Errorf("%s: id must be 1-999", where))
		case seen[in.ID]:
			errs = append(errs, fmt.Errorf("%s: id %d given twice", where, in.ID))
		}
		seen[in.ID] = true
		if len(in.CallbackSecret) < 32 {
			errs = append(errs, fmt.Errorf("%s: callback_secret must be at least 32 bytes", where))
		}
		if err := checkHTTPURL(in.CallbackBase); err != nil {
			errs = append(errs, fmt.Errorf("%s: callback_base: %w", where, err))
		}
		if in.MediaOrigin != "" {
			if err := checkHTTPURL(in.MediaOrigin); err != nil {
				errs = append(errs, fmt.Errorf("%s: media_origin: %w", where, err))
			}
		}
	}
	return errors.Join(errs...)
}

func checkListen(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("not host:port: %w", err)
	}
	return nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

func randomHex(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails on supported platforms (Go 1.24+ panics instead).
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
