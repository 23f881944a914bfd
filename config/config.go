// Package config is the network section of the bridge's config file: its struct, the
// upgrader that carries old config files forward, and the validation that refuses to
// start with a config that cannot work. The commented example lives at the repository
// root (example-config.yaml).
//
// It must not import the connector or the interop library: it only describes settings.
package config

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"text/template"
	"time"

	up "go.mau.fi/util/configupgrade"
)

// The section names double as the network names the connector uses in IDs.
const (
	NetworkWhatsApp  = "whatsapp"
	NetworkMessenger = "messenger"
)

// NetworkSection is one agreement with Meta: one network's gateway and credentials.
type NetworkSection struct {
	Enabled           bool   `yaml:"enabled"`
	GatewayURL        string `yaml:"gateway_url"`
	IntegratorID      int    `yaml:"integrator_id"`
	CallbackSecret    string `yaml:"callback_secret"`
	RootPublicKey     string `yaml:"root_public_key"`
	RootPublicKeyFile string `yaml:"root_public_key_file"`
	DisplayName       string `yaml:"display_name"`

	// rootKey is filled by Validate, which reads the file if one is named.
	rootKey ed25519.PublicKey `yaml:"-"`
}

// RootKey is Meta's root public key; it is nil until Validate succeeded.
func (s *NetworkSection) RootKey() ed25519.PublicKey {
	return s.rootKey
}

// IdentityConfig says how a Matrix user proves they own the number they log in with.
type IdentityConfig struct {
	AllowUnverifiedNumbers bool   `yaml:"allow_unverified_numbers"`
	SynapseAdminToken      string `yaml:"synapse_admin_token"`
	AdminAssignedNumbers   bool   `yaml:"admin_assigned_numbers"`
}

// MetricsConfig is the Prometheus endpoint: GET /metrics on its own listener.
type MetricsConfig struct {
	Enabled bool   `yaml:"enabled"`
	Listen  string `yaml:"listen"`
}

// CatchUpConfig is how often the bridge looks for Matrix events the homeserver
// accepted but never delivered to it (see connector/astxn's CatchUp).
type CatchUpConfig struct {
	// IntervalSeconds between looks; 0 or less turns the catch-up off.
	IntervalSeconds int `yaml:"interval_seconds"`
	// GraceSeconds an event may still be on its way in a transaction.
	GraceSeconds int `yaml:"grace_seconds"`
}

// Interval is the time between looks (0: off).
func (c *CatchUpConfig) Interval() time.Duration {
	return time.Duration(max(c.IntervalSeconds, 0)) * time.Second
}

// Grace is how long an event may be in flight before it counts as missed.
func (c *CatchUpConfig) Grace() time.Duration {
	return time.Duration(max(c.GraceSeconds, 0)) * time.Second
}

// MediaConfig is how the bridge hosts the media its users send and which sizes it
// accepts (PROTOCOL.md section 7).
type MediaConfig struct {
	// StorePath is the folder holding hosted blobs (encrypted; created if missing).
	StorePath string `yaml:"store_path"`
	// RetentionDays is how long a hosted blob is kept unless its message is revoked.
	RetentionDays int `yaml:"retention_days"`
	// MaxSizeMiB is the largest file per kind, both directions.
	MaxSizeMiB MediaSizes `yaml:"max_size_mib"`
}

// MediaSizes holds one limit per kind of media, in MiB.
type MediaSizes struct {
	Image    int `yaml:"image"`
	Video    int `yaml:"video"`
	Audio    int `yaml:"audio"`
	Document int `yaml:"document"`
}

// Media kinds, as MaxBytes takes them.
const (
	MediaImage    = "image"
	MediaVideo    = "video"
	MediaAudio    = "audio"
	MediaDocument = "document"
)

// MaxMediaMiB is the most any kind may allow: Meta's proxy fetches at most 100 MiB.
const MaxMediaMiB = 100

// DefaultMediaSizes are the limits of a config that sets none (WhatsApp's own for
// images, audio and video; Meta's proxy limit for documents).
var DefaultMediaSizes = MediaSizes{Image: 16, Video: 64, Audio: 16, Document: 100}

// Defaults of the other media settings, for configs that leave them out.
const (
	DefaultMediaStorePath     = "./media"
	DefaultMediaRetentionDays = 30
)

// MediaKinds lists the kinds in a fixed order.
func MediaKinds() []string {
	return []string{MediaImage, MediaVideo, MediaAudio, MediaDocument}
}

// Store is the hosted media folder (StorePath or its default).
func (m *MediaConfig) Store() string {
	if m.StorePath == "" {
		return DefaultMediaStorePath
	}
	return m.StorePath
}

// Retention is how long hosted blobs are kept (RetentionDays or its default).
func (m *MediaConfig) Retention() time.Duration {
	days := m.RetentionDays
	if days == 0 {
		days = DefaultMediaRetentionDays
	}
	return time.Duration(days) * 24 * time.Hour
}

// MaxMiB is the configured limit of a kind in MiB (its default when 0; 0 for an
// unknown kind).
func (m *MediaConfig) MaxMiB(kind string) int {
	pick := func(s MediaSizes) int {
		switch kind {
		case MediaImage:
			return s.Image
		case MediaVideo:
			return s.Video
		case MediaAudio:
			return s.Audio
		case MediaDocument:
			return s.Document
		}
		return 0
	}
	if mib := pick(m.MaxSizeMiB); mib != 0 {
		return mib
	}
	return pick(DefaultMediaSizes)
}

// MaxProxyPlaintext is the largest file whose encrypted blob (AES-CBC with PKCS#7
// padding, up to 16 bytes, plus the 10-byte MAC) still fits the 100 MiB that Meta's
// proxy fetches at most: 100 MiB − 17 bytes.
const MaxProxyPlaintext = MaxMediaMiB<<20 - 17

// MaxBytes is the limit for a kind (MediaImage…) in bytes; 0 for an unknown kind. A
// limit of 100 MiB is MaxProxyPlaintext, so that the file's blob can still be fetched.
func (m *MediaConfig) MaxBytes(kind string) int64 {
	return min(int64(m.MaxMiB(kind))<<20, MaxProxyPlaintext)
}

// NetworkConfig is the whole `network:` section of the bridge's config.
type NetworkConfig struct {
	WhatsApp            NetworkSection `yaml:"whatsapp"`
	Messenger           NetworkSection `yaml:"messenger"`
	CallbackBaseURL     string         `yaml:"callback_base_url"`
	Identity            IdentityConfig `yaml:"identity"`
	EnableReadReceipts  bool           `yaml:"enable_read_receipts"`
	DisplaynameTemplate string         `yaml:"displayname_template"`
	Metrics             MetricsConfig  `yaml:"metrics"`
	Media               MediaConfig    `yaml:"media"`
	MatrixCatchUp       CatchUpConfig  `yaml:"matrix_catchup"`

	displaynameTemplate *template.Template `yaml:"-"`
}

// Section returns the section of a network by its name ("whatsapp", "messenger").
func (c *NetworkConfig) Section(network string) (*NetworkSection, bool) {
	switch network {
	case NetworkWhatsApp:
		return &c.WhatsApp, true
	case NetworkMessenger:
		return &c.Messenger, true
	}
	return nil, false
}

// Networks lists the network names in a fixed order.
func Networks() []string {
	return []string{NetworkWhatsApp, NetworkMessenger}
}

// EnabledNetworks lists the names of the enabled networks in a fixed order.
func (c *NetworkConfig) EnabledNetworks() []string {
	var out []string
	for _, name := range Networks() {
		if s, _ := c.Section(name); s.Enabled {
			out = append(out, name)
		}
	}
	return out
}

// DisplaynameParams are the fields a displayname_template can use.
type DisplaynameParams struct {
	// Number is the phone number grouped for reading, or a Messenger id.
	Number string
	// Name is the name the user chose on the network, if known.
	Name string
	// Network is the network's display_name.
	Network string
}

// FormatDisplayname fills the ghost name template. The template was test-run by
// Validate, so an error here means the template failed on these particular values.
func (c *NetworkConfig) FormatDisplayname(p DisplaynameParams) (string, error) {
	tpl := c.displaynameTemplate
	if tpl == nil {
		var err error
		if tpl, err = parseDisplaynameTemplate(c.DisplaynameTemplate); err != nil {
			return "", err
		}
		c.displaynameTemplate = tpl
	}
	var buf bytes.Buffer
	if err := tpl.Execute(&buf, p); err != nil {
		return "", fmt.Errorf("failed to fill displayname_template: %w", err)
	}
	return buf.String(), nil
}

func parseDisplaynameTemplate(s string) (*template.Template, error) {
	tpl, err := template.New("displayname").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("failed to parse displayname_template: %w", err)
	}
	return tpl, nil
}

func upgradeNetworkSection(helper up.Helper, name string) {
	helper.Copy(up.Bool, name, "enabled")
	helper.Copy(up.Str|up.Null, name, "gateway_url")
	helper.Copy(up.Int, name, "integrator_id")
	helper.Copy(up.Str|up.Null, name, "callback_secret")
	helper.Copy(up.Str|up.Null, name, "root_public_key")
	helper.Copy(up.Str|up.Null, name, "root_public_key_file")
	helper.Copy(up.Str, name, "display_name")
}

func upgradeConfig(helper up.Helper) {
	for _, name := range Networks() {
		upgradeNetworkSection(helper, name)
	}
	helper.Copy(up.Str|up.Null, "callback_base_url")
	helper.Copy(up.Bool, "identity", "allow_unverified_numbers")
	helper.Copy(up.Str|up.Null, "identity", "synapse_admin_token")
	helper.Copy(up.Bool, "identity", "admin_assigned_numbers")
	helper.Copy(up.Bool, "enable_read_receipts")
	helper.Copy(up.Str, "displayname_template")
	helper.Copy(up.Bool, "metrics", "enabled")
	helper.Copy(up.Str, "metrics", "listen")
	helper.Copy(up.Str, "media", "store_path")
	helper.Copy(up.Int, "media", "retention_days")
	for _, kind := range MediaKinds() {
		helper.Copy(up.Int, "media", "max_size_mib", kind)
	}
	helper.Copy(up.Int, "matrix_catchup", "interval_seconds")
	helper.Copy(up.Int, "matrix_catchup", "grace_seconds")
}

// Upgrader carries an existing config's values onto base (the example config), so
// keys added since the file was written appear with their defaults and comments.
func Upgrader(base string) *up.StructUpgrader {
	return &up.StructUpgrader{
		SimpleUpgrader: up.SimpleUpgrader(upgradeConfig),
		Blocks: [][]string{
			{"messenger"},
			{"callback_base_url"},
			{"identity"},
			{"enable_read_receipts"},
			{"displayname_template"},
			{"metrics"},
			{"media"},
		},
		Base: base,
	}
}
