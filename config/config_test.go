package config_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	up "go.mau.fi/util/configupgrade"
	"gopkg.in/yaml.v3"

	matrixmetainterop "github.com/matrix-meta-interop/matrix-meta-interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/config"
)

func parse(t *testing.T, data string) config.NetworkConfig {
	t.Helper()
	var cfg config.NetworkConfig
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
		t.Fatalf("failed to parse config: %v", err)
	}
	return cfg
}

func upgrade(t *testing.T, old string) string {
	t.Helper()
	out, err := up.DoBytes([]byte(old), config.Upgrader(matrixmetainterop.ExampleConfig))
	if err != nil {
		t.Fatalf("failed to upgrade config: %v", err)
	}
	return string(out)
}

func TestExampleConfigDefaults(t *testing.T) {
	cfg := parse(t, matrixmetainterop.ExampleConfig)
	want := config.NetworkConfig{
		WhatsApp:            config.NetworkSection{DisplayName: "WhatsApp"},
		Messenger:           config.NetworkSection{DisplayName: "Messenger"},
		EnableReadReceipts:  true,
		DisplaynameTemplate: "{{.Number}} ({{.Network}})",
		Metrics:             config.MetricsConfig{Listen: "127.0.0.1:8001"},
		Media: config.MediaConfig{StorePath: config.DefaultMediaStorePath, RetentionDays: config.DefaultMediaRetentionDays,
			MaxSizeMiB: config.DefaultMediaSizes},
		MatrixCatchUp: config.CatchUpConfig{IntervalSeconds: 60, GraceSeconds: 30},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("example config parsed as\n%+v\nwant\n%+v", cfg, want)
	}
	// The example is valid YAML for the upgrader too: upgrading it changes nothing.
	if got := parse(t, upgrade(t, matrixmetainterop.ExampleConfig)); !reflect.DeepEqual(got, want) {
		t.Fatalf("upgraded example parsed as\n%+v\nwant\n%+v", got, want)
	}
}

// Every key of the example must be carried over by the upgrader: a full config with
// no default value left must come out of an upgrade unchanged.
func TestUpgradeKeepsEveryValue(t *testing.T) {
	full := `
whatsapp:
    enabled: true
    gateway_url: wss://wa.example/interop/v1
    integrator_id: 12
    callback_secret: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    root_public_key: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
    root_public_key_file: /etc/wa.pub
    display_name: WA
messenger:
    enabled: true
    gateway_url: wss://msgr.example/interop/v1
    integrator_id: 13
    callback_secret: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
    root_public_key: BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB=
    root_public_key_file: /etc/msgr.pub
    display_name: FB
callback_base_url: https://bridge.example
identity:
    allow_unverified_numbers: true
    synapse_admin_token: syt_admin
    admin_assigned_numbers: true
enable_read_receipts: false
displayname_template: "{{.Name}} on {{.Network}}"
metrics:
    enabled: true
    listen: 0.0.0.0:9100
media:
    store_path: /var/lib/bridge/media
    retention_days: 7
    max_size_mib:
        image: 5
        video: 50
        audio: 6
        document: 99
matrix_catchup:
    interval_seconds: 5
    grace_seconds: 2
`
	want := parse(t, full)
	got := parse(t, upgrade(t, full))
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("upgrade changed values:\n got %+v\nwant %+v", got, want)
	}
	// Guard the guard: every field of the struct is set to a non-zero value above, so a
	// key the upgrader forgets would come back as its default and differ.
	assertNoZeroFields(t, reflect.ValueOf(want), "network")
}

func assertNoZeroFields(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	for i := range v.NumField() {
		f, sf := v.Field(i), v.Type().Field(i)
		if !sf.IsExported() || f.Kind() == reflect.Bool {
			continue
		}
		if f.Kind() == reflect.Struct {
			assertNoZeroFields(t, f, path+"."+sf.Name)
		} else if f.IsZero() {
			t.Errorf("%s.%s is zero in the full test config", path, sf.Name)
		}
	}
}

func TestUpgradeAddsDefaults(t *testing.T) {
	// A config from before the messenger and identity sections existed.
	old := `
whatsapp:
    enabled: true
    gateway_url: ws://127.0.0.1:29341/interop/v1
    integrator_id: 7
display_name_unknown_key: dropped
`
	out := upgrade(t, old)
	got := parse(t, out)
	if !got.WhatsApp.Enabled || got.WhatsApp.IntegratorID != 7 || got.WhatsApp.GatewayURL != "ws://127.0.0.1:29341/interop/v1" {
		t.Errorf("kept values were lost: %+v", got.WhatsApp)
	}
	if got.WhatsApp.DisplayName != "WhatsApp" || got.Messenger.DisplayName != "Messenger" {
		t.Errorf("display names not defaulted: %q, %q", got.WhatsApp.DisplayName, got.Messenger.DisplayName)
	}
	if !got.EnableReadReceipts || got.DisplaynameTemplate != "{{.Number}} ({{.Network}})" {
		t.Errorf("defaults not added: read receipts %v, template %q", got.EnableReadReceipts, got.DisplaynameTemplate)
	}
	if got.Metrics.Enabled || got.Metrics.Listen != "127.0.0.1:8001" {
		t.Errorf("metrics not defaulted: %+v", got.Metrics)
	}
	if strings.Contains(out, "display_name_unknown_key") {
		t.Error("unknown key survived the upgrade")
	}
	// The comments for admins come along with the defaults.
	if !strings.Contains(out, "# Accept any number a user types") {
		t.Error("upgraded config lost the example's comments")
	}
}

func TestFormatDisplayname(t *testing.T) {
	cfg := parse(t, matrixmetainterop.ExampleConfig)
	got, err := cfg.FormatDisplayname(config.DisplaynameParams{Number: "+49 170 1234567", Network: "WhatsApp"})
	if err != nil || got != "+49 170 1234567 (WhatsApp)" {
		t.Fatalf("got %q, %v", got, err)
	}
	cfg.DisplaynameTemplate = "{{or .Name .Number}}"
	cfg.WhatsApp = validSection()
	cfg.Identity.AllowUnverifiedNumbers = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, _ := cfg.FormatDisplayname(config.DisplaynameParams{Number: "+1", Name: "Alice"}); got != "Alice" {
		t.Fatalf("got %q", got)
	}
}

func testKey() ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
}

func validSection() config.NetworkSection {
	return config.NetworkSection{
		Enabled:        true,
		GatewayURL:     "wss://gateway.example/interop/v1",
		IntegratorID:   12,
		CallbackSecret: strings.Repeat("s", 32),
		RootPublicKey:  base64.StdEncoding.EncodeToString(testKey()),
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "whatsapp-root.pub")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(testKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	shortKeyFile := filepath.Join(dir, "short.pub")
	if err := os.WriteFile(shortKeyFile, []byte("AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	valid := func() config.NetworkConfig {
		return config.NetworkConfig{
			WhatsApp:            validSection(),
			Identity:            config.IdentityConfig{SynapseAdminToken: "syt_x"},
			DisplaynameTemplate: "{{.Number}} ({{.Network}})",
		}
	}
	tests := []struct {
		name   string
		change func(c *config.NetworkConfig)
		want   []string // substrings of the error; none means valid
	}{
		{"valid", func(c *config.NetworkConfig) {}, nil},
		{"messenger only, key file, simulator ws URL", func(c *config.NetworkConfig) {
			c.Messenger, c.WhatsApp = c.WhatsApp, config.NetworkSection{}
			c.Messenger.GatewayURL = "ws://127.0.0.1:29342/interop/v1"
			c.Messenger.RootPublicKey, c.Messenger.RootPublicKeyFile = "", keyFile
		}, nil},
		{"unpadded base64 key", func(c *config.NetworkConfig) {
			c.WhatsApp.RootPublicKey = strings.TrimRight(c.WhatsApp.RootPublicKey, "=")
		}, nil},
		{"gateway below a prefix", func(c *config.NetworkConfig) { c.WhatsApp.GatewayURL = "wss://meta.example/eu/interop/v1" }, nil},
		{"disabled section is not checked", func(c *config.NetworkConfig) { c.Messenger = config.NetworkSection{IntegratorID: 5000} }, nil},
		{"admin assignment suffices", func(c *config.NetworkConfig) {
			c.Identity = config.IdentityConfig{AdminAssignedNumbers: true}
		}, nil},
		{"nothing enabled", func(c *config.NetworkConfig) { c.WhatsApp.Enabled = false }, []string{"no network is enabled"}},
		{"empty gateway", func(c *config.NetworkConfig) { c.WhatsApp.GatewayURL = "" }, []string{"network.whatsapp.gateway_url: is empty"}},
		{"http gateway", func(c *config.NetworkConfig) { c.WhatsApp.GatewayURL = "https://gw.example/interop/v1" }, []string{"ws:// or wss://", `"https"`}},
		{"gateway path", func(c *config.NetworkConfig) { c.WhatsApp.GatewayURL = "wss://gw.example/interop" }, []string{"must end in /interop/v1"}},
		{"gateway without host", func(c *config.NetworkConfig) { c.WhatsApp.GatewayURL = "wss:///interop/v1" }, []string{"has no host"}},
		{"gateway unparsable", func(c *config.NetworkConfig) { c.WhatsApp.GatewayURL = "wss://gw example/%zz" }, []string{"is not a URL"}},
		{"integrator 0", func(c *config.NetworkConfig) { c.WhatsApp.IntegratorID = 0 }, []string{"network.whatsapp.integrator_id: must be 1-999", "got 0"}},
		{"integrator 1000", func(c *config.NetworkConfig) { c.WhatsApp.IntegratorID = 1000 }, []string{"got 1000"}},
		{"short secret", func(c *config.NetworkConfig) { c.WhatsApp.CallbackSecret = "hunter2-but-longer" }, []string{"callback_secret: must be at least 32 bytes, got 18"}},
		{"no key", func(c *config.NetworkConfig) { c.WhatsApp.RootPublicKey = "" }, []string{"root_public_key: is empty"}},
		{"both keys", func(c *config.NetworkConfig) { c.WhatsApp.RootPublicKeyFile = keyFile }, []string{"not both"}},
		{"key not base64", func(c *config.NetworkConfig) { c.WhatsApp.RootPublicKey = "not base64!" }, []string{"is not base64"}},
		{"key too short", func(c *config.NetworkConfig) { c.WhatsApp.RootPublicKey = "AAAA" }, []string{"must be 32 bytes, got 3"}},
		{"key file missing", func(c *config.NetworkConfig) {
			c.WhatsApp.RootPublicKey, c.WhatsApp.RootPublicKeyFile = "", filepath.Join(dir, "missing.pub")
		}, []string{"failed to read root_public_key_file"}},
		{"key file short", func(c *config.NetworkConfig) {
			c.WhatsApp.RootPublicKey, c.WhatsApp.RootPublicKeyFile = "", shortKeyFile
		}, []string{"short.pub: must be 32 bytes"}},
		{"same secret on both networks", func(c *config.NetworkConfig) {
			c.Messenger = validSection()
		}, []string{"network.messenger.callback_secret: must differ from whatsapp.callback_secret"}},
		{"both networks, own secrets", func(c *config.NetworkConfig) {
			c.Messenger = validSection()
			c.Messenger.CallbackSecret = strings.Repeat("m", 32)
		}, nil},
		{"no verification", func(c *config.NetworkConfig) { c.Identity = config.IdentityConfig{} }, []string{"no way to verify phone numbers"}},
		{"callback URL scheme", func(c *config.NetworkConfig) { c.CallbackBaseURL = "ftp://bridge.example" }, []string{"callback_base_url: must be an http:// or https:// URL"}},
		{"callback URL query", func(c *config.NetworkConfig) { c.CallbackBaseURL = "https://bridge.example/?x=1" }, []string{"query or fragment"}},
		{"template syntax", func(c *config.NetworkConfig) { c.DisplaynameTemplate = "{{.Number" }, []string{"failed to parse displayname_template"}},
		{"template field", func(c *config.NetworkConfig) { c.DisplaynameTemplate = "{{.Phone}}" }, []string{"failed to fill displayname_template"}},
		{"media defaults when left out", func(c *config.NetworkConfig) { c.Media = config.MediaConfig{} }, nil},
		{"media document over the proxy limit", func(c *config.NetworkConfig) { c.Media.MaxSizeMiB.Document = 101 },
			[]string{"network.media.max_size_mib.document: must be 1-100"}},
		{"media negative image size", func(c *config.NetworkConfig) { c.Media.MaxSizeMiB.Image = -1 },
			[]string{"network.media.max_size_mib.image: must be 1-100"}},
		{"media negative retention", func(c *config.NetworkConfig) { c.Media.RetentionDays = -3 },
			[]string{"network.media.retention_days: must be at least 1"}},
		{"metrics on localhost", func(c *config.NetworkConfig) {
			c.Metrics = config.MetricsConfig{Enabled: true, Listen: "127.0.0.1:8001"}
		}, nil},
		{"metrics on every interface", func(c *config.NetworkConfig) { c.Metrics = config.MetricsConfig{Enabled: true, Listen: ":9100"} }, nil},
		{"disabled metrics are not checked", func(c *config.NetworkConfig) { c.Metrics = config.MetricsConfig{Listen: "nonsense"} }, nil},
		{"metrics without listen", func(c *config.NetworkConfig) { c.Metrics = config.MetricsConfig{Enabled: true} }, []string{"network.metrics.listen: must be set"}},
		{"metrics without port", func(c *config.NetworkConfig) { c.Metrics = config.MetricsConfig{Enabled: true, Listen: "127.0.0.1"} }, []string{"network.metrics.listen: must be host:port"}},
		{"metrics port name", func(c *config.NetworkConfig) {
			c.Metrics = config.MetricsConfig{Enabled: true, Listen: "localhost:http"}
		}, []string{`port "http" must be a number`}},
		{"metrics port 0", func(c *config.NetworkConfig) { c.Metrics = config.MetricsConfig{Enabled: true, Listen: "localhost:0"} }, []string{`port "0" must be a number`}},
		{"every problem at once", func(c *config.NetworkConfig) {
			c.Messenger = config.NetworkSection{Enabled: true}
		}, []string{"network.messenger.gateway_url", "network.messenger.integrator_id", "network.messenger.callback_secret", "network.messenger.root_public_key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			err := cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				for _, name := range cfg.EnabledNetworks() {
					s, _ := cfg.Section(name)
					if !s.RootKey().Equal(testKey()) {
						t.Errorf("%s root key not loaded", name)
					}
					if s.DisplayName == "" {
						t.Errorf("%s display name not defaulted", name)
					}
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), strings.Repeat("s", 32)) {
				t.Error("error leaks the callback secret")
			}
		})
	}
}

func TestCallbackBaseURLTrailingSlash(t *testing.T) {
	cfg := config.NetworkConfig{
		WhatsApp:            validSection(),
		Identity:            config.IdentityConfig{AllowUnverifiedNumbers: true},
		DisplaynameTemplate: "{{.Number}}",
		CallbackBaseURL:     "https://bridge.example/meta/",
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.CallbackBaseURL != "https://bridge.example/meta" {
		t.Fatalf("got %q", cfg.CallbackBaseURL)
	}
}

func TestValidationErrorListsEachProblem(t *testing.T) {
	cfg := config.NetworkConfig{
		WhatsApp:            validSection(),
		Messenger:           config.NetworkSection{Enabled: true, IntegratorID: 12},
		Identity:            config.IdentityConfig{AllowUnverifiedNumbers: true},
		DisplaynameTemplate: "{{.Number}}",
	}
	var ve *config.ValidationError
	if err := cfg.Validate(); !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError, got %v", err)
	}
	want := []string{"network.messenger.gateway_url", "network.messenger.callback_secret", "network.messenger.root_public_key"}
	if len(ve.Problems) != len(want) {
		t.Fatalf("got problems %q", ve.Problems)
	}
	for i, w := range want {
		if !strings.HasPrefix(ve.Problems[i], w+": ") {
			t.Errorf("problem %d is %q, want it to start with %s", i, ve.Problems[i], w)
		}
	}
}

// Media settings left out take their defaults; set ones are used as given.
func TestMediaConfigDefaults(t *testing.T) {
	var empty config.MediaConfig
	if empty.Store() != "./media" || empty.Retention() != 30*24*time.Hour || empty.MaxBytes(config.MediaDocument) != 100<<20-17 ||
		empty.MaxBytes(config.MediaImage) != 16<<20 || empty.MaxBytes("sticker") != 0 {
		t.Errorf("defaults: %q %v %d %d", empty.Store(), empty.Retention(), empty.MaxBytes(config.MediaDocument), empty.MaxBytes(config.MediaImage))
	}
	set := config.MediaConfig{StorePath: "/srv/m", RetentionDays: 2, MaxSizeMiB: config.MediaSizes{Video: 10}}
	if set.Store() != "/srv/m" || set.Retention() != 48*time.Hour || set.MaxBytes(config.MediaVideo) != 10<<20 || set.MaxBytes(config.MediaAudio) != 16<<20 {
		t.Errorf("set: %q %v %d %d", set.Store(), set.Retention(), set.MaxBytes(config.MediaVideo), set.MaxBytes(config.MediaAudio))
	}
}

// The largest file allowed still makes a blob Meta's proxy fetches (at most 100 MiB):
// PKCS#7 padding and the 10-byte MAC come on top.
func TestMaxProxyPlaintextFits(t *testing.T) {
	blob := func(n int64) int64 { return (n/16+1)*16 + 10 }
	if b := blob(config.MaxProxyPlaintext); b > 100<<20 {
		t.Errorf("a %d-byte file makes a %d-byte blob, over the proxy's limit", config.MaxProxyPlaintext, b)
	}
	if b := blob(config.MaxProxyPlaintext + 1); b <= 100<<20 {
		t.Errorf("the limit is lower than it needs to be: %d bytes still fit", config.MaxProxyPlaintext+1)
	}
}
