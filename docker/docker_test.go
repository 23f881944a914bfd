package docker

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestImage builds the binaries once with the image's build script and then checks
// what an admin of the image would meet: static binaries that run anywhere, and an
// entrypoint that walks through config, registration and start.
func TestImage(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("sh", "build.sh", bin)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh failed: %v\n%s", err, out)
	}
	bridge := filepath.Join(bin, "matrix-meta-interop")

	t.Run("static binaries", func(t *testing.T) {
		for _, name := range []string{"matrix-meta-interop", "metasim"} {
			assertStatic(t, filepath.Join(bin, name))
		}
		out, err := exec.Command(bridge, "-v").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "matrix-meta-interop v") {
			t.Errorf("bridge -v: %v, %q", err, out)
		}
		out, err = exec.Command(filepath.Join(bin, "metasim"), "-h").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage: metasim") {
			t.Errorf("metasim -h: %v, %q", err, out)
		}
	})

	t.Run("first starts", func(t *testing.T) { testFirstStarts(t, bridge) })
	t.Run("arguments", testArguments)
}

// assertStatic fails unless the ELF file asks for no dynamic loader and no shared
// library: the final image has no C library to offer.
func assertStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("failed to open %s: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (program header %v)", filepath.Base(path), p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", filepath.Base(path), libs)
	}
}

// testFirstStarts follows an admin through the image's first starts on one data folder
// with the real bridge.
func testFirstStarts(t *testing.T, bridge string) {
	data := t.TempDir()
	configPath := filepath.Join(data, "config.yaml")
	registrationPath := filepath.Join(data, "registration.yaml")

	// 1: no config: an example set up for a container, and nothing else.
	res := runEntrypoint(t, bridge, data)
	if res.code != 0 || !strings.Contains(res.stdout, "Fill in at least") {
		t.Fatalf("first start: %s", res)
	}
	if info, err := os.Stat(configPath); err != nil {
		t.Fatalf("first start wrote no config: %v", err)
	} else if info.Mode().Perm()&0o077 != 0 {
		t.Errorf("config holds secrets but is readable by others: %v", info.Mode().Perm())
	}
	assertNotExist(t, registrationPath)
	var cfg bridgeConfig
	readYAML(t, configPath, &cfg)
	if cfg.Appservice.Hostname != "0.0.0.0" {
		t.Errorf("appservice.hostname = %q, want 0.0.0.0 so the container is reachable", cfg.Appservice.Hostname)
	}
	wantURI := "file:" + data + "/bridge.db?_txlock=immediate&_stmt_cache_size=64"
	if cfg.Database.Type != "sqlite3-fk-wal" || cfg.Database.URI != wantURI {
		t.Errorf("database = %q %q, want sqlite3-fk-wal %q", cfg.Database.Type, cfg.Database.URI, wantURI)
	}

	// 2: the homeserver is not filled in yet: no registration, and the admin is told why.
	res = runEntrypoint(t, bridge, data)
	if res.code == 0 || !strings.Contains(res.stderr, "set homeserver.address and homeserver.domain") {
		t.Fatalf("start with the example config: %s", res)
	}
	assertNotExist(t, registrationPath)

	// 3: with the homeserver's domain: the registration, with the config's tokens.
	raw, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	const exampleDomain = "\n    domain: example.com\n"
	if strings.Count(string(raw), exampleDomain) != 1 {
		t.Fatalf("the example config no longer has %q once", exampleDomain)
	}
	raw = []byte(strings.Replace(string(raw), exampleDomain, "\n    domain: bridge.test\n", 1))
	if err := os.WriteFile(configPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	res = runEntrypoint(t, bridge, data)
	if res.code != 0 || !strings.Contains(res.stdout, "app_service_config_files") {
		t.Fatalf("start after filling in the domain: %s", res)
	}
	var reg registration
	readYAML(t, registrationPath, &reg)
	readYAML(t, configPath, &cfg)
	if reg.ASToken == "" || reg.ASToken != cfg.Appservice.ASToken || reg.HSToken != cfg.Appservice.HSToken {
		t.Errorf("registration tokens do not match the config's")
	}
	if !reg.ReceiveEphemeral {
		t.Errorf("registration lacks receive_ephemeral: typing and receipts would not reach the bridge")
	}

	// 4: both files: the bridge itself runs on them, in the data folder. The example
	// homeserver.address makes it stop at its config check, which shows it read them.
	res = runEntrypoint(t, bridge, data)
	if res.code == 0 || !strings.Contains(res.stdout+res.stderr, "homeserver.address not configured") {
		t.Fatalf("start with config and registration: %s", res)
	}
	if _, err := os.Stat(filepath.Join(data, "logs", "bridge.log")); err != nil {
		t.Errorf("the bridge did not run in the data folder (no logs/bridge.log): %v", err)
	}
}

// testArguments checks what the entrypoint passes on, with a stand-in for the bridge
// that prints its arguments.
func testArguments(t *testing.T) {
	stub := filepath.Join(t.TempDir(), "bridge")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\necho \"bridge $*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ready := t.TempDir()
	for _, name := range []string{"config.yaml", "registration.yaml"} {
		if err := os.WriteFile(filepath.Join(ready, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing")

	tests := []struct {
		name       string
		data       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{{
		name:       "runs the bridge on the data folder's files",
		data:       ready,
		wantStdout: "bridge -c " + ready + "/config.yaml -r " + ready + "/registration.yaml\n",
	}, {
		name:       "passes flags on to the bridge",
		data:       ready,
		args:       []string{"--ignore-unsupported-server"},
		wantStdout: "bridge -c " + ready + "/config.yaml -r " + ready + "/registration.yaml --ignore-unsupported-server\n",
	}, {
		name:       "runs another command instead",
		data:       missing,
		args:       []string{"echo", "metasim here"},
		wantStdout: "metasim here\n",
	}, {
		name:       "refuses a data folder that is not there",
		data:       missing,
		wantCode:   1,
		wantStderr: "must be a folder that this container's user",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runEntrypoint(t, stub, tt.data, tt.args...)
			if res.code != tt.wantCode || res.stdout != tt.wantStdout || !strings.Contains(res.stderr, tt.wantStderr) {
				t.Errorf("got %s\nwant exit %d, stdout %q, stderr containing %q", res, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runEntrypoint runs docker-run.sh under sh (dash on Debian, a POSIX shell like the
// image's busybox ash) with the bridge binary and data folder overridden.
func runEntrypoint(t *testing.T, bridge, data string, args ...string) result {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"docker-run.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "BRIDGE_BINARY="+bridge, "BRIDGE_DATA="+data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		res.code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("failed to run docker-run.sh: %v", err)
	}
	return res
}

// bridgeConfig is the part of the bridge's config the entrypoint and the admin set.
type bridgeConfig struct {
	Appservice struct {
		Hostname string `yaml:"hostname"`
		ASToken  string `yaml:"as_token"`
		HSToken  string `yaml:"hs_token"`
	} `yaml:"appservice"`
	Database struct {
		Type string `yaml:"type"`
		URI  string `yaml:"uri"`
	} `yaml:"database"`
}

// registration is the part of the appservice registration Synapse relies on here.
type registration struct {
	ASToken          string `yaml:"as_token"`
	HSToken          string `yaml:"hs_token"`
	ReceiveEphemeral bool   `yaml:"receive_ephemeral"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("failed to read %s: %v", path, err)
	}
	if err := yaml.Unmarshal(raw, into); err != nil {
		t.Fatalf("failed to parse %s: %v", path, err)
	}
}

func assertNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s should not exist yet (stat: %v)", filepath.Base(path), err)
	}
}
