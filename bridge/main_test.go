package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// buildBridge compiles this command the way it is shipped (-tags goolm, since
// mautrix's crypto has no libolm here) and returns the binary's path.
func buildBridge(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the bridge: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "bridge")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "build", "-tags", "goolm", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("failed to build the bridge: %v\n%s", err, out)
	}
	return bin
}

// run runs the bridge in dir and returns its exit code and output.
func run(t *testing.T, bin, dir string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), out.String()
	}
	t.Fatalf("failed to run the bridge %v: %v\n%s", args, err, out.String())
	return -1, ""
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s is not YAML: %v", path, err)
	}
	return m
}

func writeYAML(t *testing.T, path string, m map[string]any) {
	t.Helper()
	data, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// get walks nested maps: get(m, "network", "whatsapp", "enabled").
func get(t *testing.T, m map[string]any, path ...string) any {
	t.Helper()
	var cur any = m
	for _, key := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: %q is not under a map", path, key)
		}
		if cur, ok = mm[key]; !ok {
			t.Fatalf("%v: no key %q", path, key)
		}
	}
	return cur
}

func section(t *testing.T, m map[string]any, path ...string) map[string]any {
	t.Helper()
	s, ok := get(t, m, path...).(map[string]any)
	if !ok {
		t.Fatalf("%v is not a map", path)
	}
	return s
}

func TestBridgeBinary(t *testing.T) {
	bin := buildBridge(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	regPath := filepath.Join(dir, "registration.yaml")

	// -e writes the full example: mxmain's sections plus ours under network:.
	if code, out := run(t, bin, dir, "-e", "-c", cfgPath); code != 0 {
		t.Fatalf("-e exited with %d:\n%s", code, out)
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nnetwork:\n    # Meta's interop offer is signed per network",
		"\n    whatsapp:\n", "\n    messenger:\n", "# Accept any number a user types",
		"command_prefix: '!meta'", "port: 29350", "username_template: metainterop_{{.}}",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("example config lacks %q", want)
		}
	}
	cfg := readYAML(t, cfgPath)
	if get(t, cfg, "network", "whatsapp", "display_name") != "WhatsApp" ||
		get(t, cfg, "network", "displayname_template") != "{{.Number}} ({{.Network}})" {
		t.Fatalf("network section has wrong defaults: %v", cfg["network"])
	}
	if code, out := run(t, bin, dir, "-e", "-c", cfgPath); code == 0 || !strings.Contains(out, "already exists") {
		t.Errorf("-e overwrote an existing config (exit %d): %s", code, out)
	}

	// -g needs a real homeserver domain; it writes the registration and puts its tokens
	// into the config, carrying our values through the upgrader.
	section(t, cfg, "homeserver")["domain"] = "test.invalid"
	section(t, cfg, "network", "whatsapp")["integrator_id"] = 12
	delete(section(t, cfg, "network"), "identity") // an old config without the section
	writeYAML(t, cfgPath, cfg)
	if code, out := run(t, bin, dir, "-g", "-c", cfgPath, "-r", regPath); code != 0 {
		t.Fatalf("-g exited with %d:\n%s", code, out)
	}
	reg := readYAML(t, regPath)
	if reg["id"] != "metainterop" || reg["url"] != "http://localhost:29350" {
		t.Errorf("registration id %v, url %v", reg["id"], reg["url"])
	}
	regText, _ := os.ReadFile(regPath)
	if !strings.Contains(string(regText), `^@metainterop_.*:test\.invalid$`) {
		t.Errorf("registration does not reserve the ghosts' namespace:\n%s", regText)
	}
	cfg = readYAML(t, cfgPath)
	asToken, _ := reg["as_token"].(string)
	if asToken == "" || get(t, cfg, "appservice", "as_token") != asToken || get(t, cfg, "appservice", "hs_token") != reg["hs_token"] {
		t.Error("the config did not get the registration's tokens")
	}
	if get(t, cfg, "network", "whatsapp", "integrator_id") != 12 {
		t.Error("the upgrade lost network.whatsapp.integrator_id")
	}
	if get(t, cfg, "network", "identity", "allow_unverified_numbers") != false {
		t.Error("the upgrade did not restore the identity section with its defaults")
	}

	// Starting with a network section that cannot work stops at config validation with
	// our message (mxmain's exit code 11), before anything connects.
	section(t, cfg, "homeserver")["address"] = "http://127.0.0.1:1"
	db := section(t, cfg, "database")
	db["type"], db["uri"] = "sqlite3-fk-wal", "file:"+filepath.Join(dir, "bridge.db")+"?_txlock=immediate"
	section(t, cfg, "bridge")["permissions"] = map[string]any{"test.invalid": "user"}
	cfg["logging"] = map[string]any{"min_level": "info", "writers": []any{map[string]any{"type": "stdout", "format": "json"}}}
	wa := section(t, cfg, "network", "whatsapp")
	wa["enabled"], wa["gateway_url"], wa["callback_secret"] = true, "http://gw.invalid/interop/v1", "short"
	wa["root_public_key"] = base64.StdEncoding.EncodeToString(make([]byte, ed25519.PublicKeySize))
	writeYAML(t, cfgPath, cfg)
	code, out := run(t, bin, dir, "-c", cfgPath)
	t.Logf("bridge refused its config:\n%s", out)
	if code != 11 {
		t.Fatalf("invalid network config: exit %d, want 11:\n%s", code, out)
	}
	for _, want := range []string{"network.whatsapp.gateway_url", "network.whatsapp.callback_secret", "no way to verify phone numbers"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not explain %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bridge.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the bridge opened its database before refusing its config: %v", err)
	}
}
