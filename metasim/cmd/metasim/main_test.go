package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/control"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// TestBinary builds the command, runs it with a temporary config, reads the
// addresses it prints, uses the control API, and stops it with SIGTERM: it must close
// its listeners and exit 0.
func TestBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "metasim")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cfg := metasim.DefaultConfig()
	cfg.DataDir = "data" // relative: must land next to the config file
	cfg.Control.Listen, cfg.Media.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Networks.WhatsApp.Listen, cfg.Networks.Messenger.Listen = "127.0.0.1:0", "127.0.0.1:0"
	data, err := yaml.Marshal(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "conf", "metasim.yaml")
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-c", cfgPath)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
		}
	})

	printed := readSummary(t, stdout)
	controlURL := printed["control API"]
	if !strings.HasPrefix(controlURL, "http://127.0.0.1:") {
		t.Fatalf("control API printed as %q; stdout: %v", controlURL, printed)
	}
	if !strings.Contains(printed["control token"], cfgPath) {
		t.Errorf("token location %q does not name the config file", printed["control token"])
	}
	wantKey := filepath.Join(dir, "conf", "data", "whatsapp-root.pub")
	if printed["whatsapp root public key"] != wantKey {
		t.Errorf("root key printed as %q, want %q", printed["whatsapp root public key"], wantKey)
	}
	rootKey, err := metasim.ReadRootPublicKey(wantKey)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout); exited <- cmd.Wait() }()

	var st control.Status
	if code := simtest.Call(t, controlURL, cfg.Control.Token, http.MethodGet, "/v1/status", nil, &st); code != http.StatusOK {
		t.Fatalf("status = %d", code)
	}
	if len(st.Networks) != 2 || st.Networks[0].GatewayURL != printed["whatsapp gateway"] ||
		!st.Networks[0].RootPublicKey.Equal(rootKey) {
		t.Fatalf("status %+v disagrees with what was printed %v", st, printed)
	}
	if code := simtest.Call(t, controlURL, "wrong-token", http.MethodGet, "/v1/status", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("wrong token = %d, want 401", code)
	}
	gwAddr := strings.TrimSuffix(strings.TrimPrefix(printed["whatsapp gateway"], "ws://"), "/interop/v1")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit 20 s after SIGTERM\nstderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "Simulator stopped") {
		t.Errorf("no clean shutdown in the log:\n%s", stderr.String())
	}
	for _, addr := range []string{strings.TrimPrefix(controlURL, "http://"), gwAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections after the exit", addr)
		}
	}
	// The SQLite database was closed cleanly: no WAL left to replay.
	if _, err := os.Stat(filepath.Join(dir, "conf", "data", "metasim.db-wal")); err == nil {
		t.Error("the database's WAL file is still there: it was not closed")
	}
}

// readSummary reads the "name: value" lines the command prints until its last line.
func readSummary(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
			if strings.HasPrefix(sc.Text(), "Stop with") {
				break
			}
		}
		close(lines)
	}()
	out := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if len(out) == 0 {
					t.Fatal("the command printed no addresses")
				}
				return out
			}
			if k, v, found := strings.Cut(strings.TrimSpace(line), ": "); found {
				out[k] = v
			}
		case <-ctx.Done():
			t.Fatalf("the command printed no summary in time; so far %v", out)
		}
	}
}

// TestGenerateFlag checks -g writes a config that loads, and refuses to overwrite.
func TestGenerateFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	var out, errOut bytes.Buffer
	if code := run([]string{"-c", path, "-g"}, &out, &errOut); code != 0 {
		t.Fatalf("-g exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), path) {
		t.Errorf("-g did not say where: %q", out.String())
	}
	if _, err := metasim.LoadConfig(path); err != nil {
		t.Fatalf("generated config does not load: %v", err)
	}
	if code := run([]string{"-c", path, "-g"}, &out, &errOut); code == 0 {
		t.Error("-g overwrote an existing config")
	}
	if code := run([]string{"extra"}, &out, &errOut); code != 2 {
		t.Errorf("stray argument exit %d, want 2", code)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("control: {listen: nope}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"-c", bad}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "control") {
		t.Errorf("bad config exit %d: %q", code, errOut.String())
	}
}
