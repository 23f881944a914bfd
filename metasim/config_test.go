package metasim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestDefaultConfigRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config.yaml")
	written, err := WriteDefaultConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode = %v, %v; want 0600 (it holds secrets)", info.Mode(), err)
	}
	loaded, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("the default config does not load: %v", err)
	}
	if loaded.Control.Token != written.Control.Token || len(loaded.Control.Token) != 64 {
		t.Errorf("token %q did not survive the round trip (%q)", loaded.Control.Token, written.Control.Token)
	}
	if want := filepath.Join(filepath.Dir(path), "metasim-data"); loaded.DataDir != want {
		t.Errorf("data dir = %q, want %q (relative to the config file)", loaded.DataDir, want)
	}
	wa := loaded.Networks.WhatsApp
	if !wa.Enabled || len(wa.Integrators) != 1 || len(wa.Integrators[0].CallbackSecret) < 32 {
		t.Errorf("whatsapp network = %+v", wa)
	}
	if time.Duration(wa.Limits.IdleTimeout) != 90*time.Second || wa.Limits.BurstMessages != 30 {
		t.Errorf("limits are not the protocol's: %+v", wa.Limits)
	}
	if _, err := WriteDefaultConfig(path); err == nil {
		t.Error("WriteDefaultConfig overwrote an existing file")
	}
	// Every default config has its own secrets.
	if other := DefaultConfig(); other.Control.Token == written.Control.Token ||
		other.Networks.WhatsApp.Integrators[0].CallbackSecret == wa.Integrators[0].CallbackSecret {
		t.Error("two default configs share a secret")
	}
}

func TestParseConfigRefusals(t *testing.T) {
	base := func() Config {
		c := DefaultConfig()
		return c
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"short token", func(c *Config) { c.Control.Token = "x" }, "control.token"},
		{"bad listen", func(c *Config) { c.Control.Listen = "nope" }, "control.listen"},
		{"no network", func(c *Config) { c.Networks.WhatsApp.Enabled = false; c.Networks.Messenger.Enabled = false }, "no network"},
		{"integrator id", func(c *Config) { c.Networks.WhatsApp.Integrators[0].ID = 1000 }, "1-999"},
		{"short secret", func(c *Config) { c.Networks.Messenger.Integrators[0].CallbackSecret = "short" }, "callback_secret"},
		{"callback url", func(c *Config) { c.Networks.WhatsApp.Integrators[0].CallbackBase = "ftp://x" }, "callback_base"},
		{"duplicate integrator", func(c *Config) {
			c.Networks.WhatsApp.Integrators = append(c.Networks.WhatsApp.Integrators, c.Networks.WhatsApp.Integrators[0])
		}, "given twice"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error about %q", err, tc.want)
			}
		})
	}
	for name, yaml := range map[string]string{
		"unknown key":  "control:\n  listen: 127.0.0.1:1\n  tokn: x\n",
		"bad duration": "networks:\n  whatsapp:\n    cert_validity: forever\n",
		"not yaml":     "\t: : :",
	} {
		if _, err := ParseConfig([]byte(yaml)); err == nil {
			t.Errorf("%s: ParseConfig accepted %q", name, yaml)
		}
	}
}

func TestKeysPersistAcrossStarts(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Control.Listen, cfg.Media.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Networks.WhatsApp.Listen, cfg.Networks.Messenger.Listen = "127.0.0.1:0", "127.0.0.1:0"
	ctx := context.Background()
	open := func() (ed25519.PublicKey, ed25519.PublicKey) {
		sim, err := New(ctx, cfg, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		wa, msgr := sim.RootPublicKey("whatsapp"), sim.RootPublicKey("messenger")
		fromFile, err := ReadRootPublicKey(sim.RootPublicKeyFile("whatsapp"))
		if err != nil || !fromFile.Equal(wa) {
			t.Fatalf("root key file holds %x (%v), the gateway uses %x", fromFile, err, wa)
		}
		if sim.RootPublicKeyFile("whatsapp") != filepath.Join(dir, "whatsapp-root.pub") {
			t.Errorf("root key file at %s", sim.RootPublicKeyFile("whatsapp"))
		}
		return wa, msgr
	}
	wa1, msgr1 := open()
	if wa1.Equal(msgr1) {
		t.Error("both networks got the same root key")
	}
	wa2, msgr2 := open()
	if !wa1.Equal(wa2) || !msgr1.Equal(msgr2) {
		t.Error("root keys changed across a restart")
	}
	for _, f := range []string{"whatsapp-root.key", "whatsapp-noise.key", "messenger-root.key"} {
		info, err := os.Stat(filepath.Join(dir, f))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, info.Mode(), err)
		}
	}
	// A damaged key file stops the start instead of silently replacing Meta's root.
	if err := os.WriteFile(filepath.Join(dir, "whatsapp-root.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, cfg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "whatsapp-root.key") {
		t.Errorf("New with a damaged key = %v", err)
	}
}

func TestMemoryModeLeavesNothingBehind(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.Database = "", MemoryDatabase
	cfg.Control.Listen, cfg.Media.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Networks.WhatsApp.Listen = "127.0.0.1:0"
	cfg.Networks.Messenger.Enabled = false
	sim, err := New(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	where := sim.Database()
	if _, err := os.Stat(where); err != nil {
		t.Fatalf("memory database %s: %v", where, err)
	}
	if sim.RootPublicKeyFile("whatsapp") != "" || sim.Gateway("messenger") != nil {
		t.Error("memory mode wrote a key file, or a disabled network runs")
	}
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(context.Background()); err == nil {
		t.Error("a second Start was accepted")
	}
	if sim.GatewayURL("whatsapp") == "" || strings.HasSuffix(sim.Addrs().Control, ":0") {
		t.Errorf("addresses not reported: %+v", sim.Addrs())
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(where)); !os.IsNotExist(err) {
		t.Errorf("memory database folder still there after Close: %v", err)
	}
	if err := sim.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@db/x":  "postgres://u:xxxxx@db/x",
		"postgres://u@db/x":         "postgres://u@db/x",
		"/var/lib/metasim/x.db":     "/var/lib/metasim/x.db",
		"postgresql://a:b@c:5432/d": "postgresql://a:xxxxx@c:5432/d",
	} {
		if got := redactDSN(in); got != want {
			t.Errorf("redactDSN(%q) = %q, want %q", in, got, want)
		}
	}
	var buf bytes.Buffer
	log, err := NewLogger(LogConfig{Level: "debug", JSON: true}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug().Msg("x")
	if !strings.Contains(buf.String(), `"level":"debug"`) {
		t.Errorf("JSON logger wrote %q", buf.String())
	}
}

// The default config works with the bridge's defaults out of the box: callbacks at its
// default appservice listener, and a secret per network (the bridge refuses one secret
// for two networks).
func TestDefaultConfigMatchesBridgeDefaults(t *testing.T) {
	cfg := DefaultConfig()
	wa, msgr := cfg.Network("whatsapp").Integrators[0], cfg.Network("messenger").Integrators[0]
	if wa.CallbackSecret == msgr.CallbackSecret {
		t.Error("both networks got the same callback secret")
	}
	for _, in := range []IntegratorConfig{wa, msgr} {
		if in.CallbackBase != "http://127.0.0.1:29350" || in.MediaOrigin != in.CallbackBase {
			t.Errorf("integrator calls back at %q / %q", in.CallbackBase, in.MediaOrigin)
		}
	}
}
