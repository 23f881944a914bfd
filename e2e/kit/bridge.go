package kit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// RepoRoot finds the checkout holding go.mod, from the working folder upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "bridge", "main.go")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no matrix-meta-interop checkout above the working folder")
		}
		dir = parent
	}
}

// BuildBridge compiles the bridge (with -tags goolm) into outDir and returns the
// binary's path.
func BuildBridge(ctx context.Context, repoRoot, outDir string) (string, error) {
	bin := filepath.Join(outDir, "matrix-meta-interop")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "goolm", "-o", bin, "./bridge")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to build the bridge: %w\n%s", err, out)
	}
	return bin, nil
}

// BridgeOptions say how to set up a bridge process.
type BridgeOptions struct {
	Binary string
	// Dir is the bridge's working folder (config, registration, logs, SQLite).
	Dir string
	// HomeserverURL and ServerName point it at the homeserver.
	HomeserverURL, ServerName string
	// Database is "" for SQLite in Dir, or a postgres:// URI.
	Database string
	// Admins get the bridge's admin permission.
	Admins []string
}

// Bridge is the bridge process, started and stopped by the kit.
type Bridge struct {
	Dir, ConfigPath, RegistrationPath, LogPath string
	// URL is the appservice listener (callbacks and provisioning live there too).
	URL  string
	Port int
	// ProvisioningSecret authorizes provisioning API calls for any user.
	ProvisioningSecret string

	binary string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan error
	http   *http.Client
}

// PrepareBridge writes the bridge's config (from its own -e example) with the test
// settings, and its appservice registration (-g). Start runs it.
func PrepareBridge(ctx context.Context, o BridgeOptions) (*Bridge, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	b := &Bridge{
		Dir:                o.Dir,
		ConfigPath:         filepath.Join(o.Dir, "config.yaml"),
		RegistrationPath:   filepath.Join(o.Dir, "registration.yaml"),
		LogPath:            filepath.Join(o.Dir, "bridge.log"),
		URL:                fmt.Sprintf("http://127.0.0.1:%d", port),
		Port:               port,
		ProvisioningSecret: randomHex(24),
		binary:             o.Binary,
		http:               &http.Client{Timeout: 60 * time.Second},
	}
	if out, err := b.run(ctx, "-e"); err != nil {
		return nil, fmt.Errorf("failed to write the example config: %w\n%s", err, out)
	}
	dbType, dbURI := "sqlite3-fk-wal", "file:"+filepath.Join(o.Dir, "bridge.db")+"?_txlock=immediate&_stmt_cache_size=64"
	if o.Database != "" {
		dbType, dbURI = "postgres", o.Database
	}
	perms := map[string]any{"*": "relay", o.ServerName: "user"}
	for _, admin := range o.Admins {
		perms[admin] = "admin"
	}
	err = b.EditConfig(map[string]any{
		"homeserver.address":                        o.HomeserverURL,
		"homeserver.domain":                         o.ServerName,
		"appservice.address":                        b.URL,
		"appservice.public_address":                 b.URL,
		"appservice.hostname":                       "127.0.0.1",
		"appservice.port":                           port,
		"database.type":                             dbType,
		"database.uri":                              dbURI,
		"database.max_idle_conns":                   5,
		"bridge.permissions":                        perms,
		"provisioning.shared_secret":                b.ProvisioningSecret,
		"matrix.message_status_events":              true,
		"matrix.delivery_receipts":                  true,
		"logging.min_level":                         "debug",
		"logging.writers":                           []any{map[string]any{"type": "stdout", "format": "json"}},
		"encryption.pickle_key":                     randomHex(16),
		"public_media.signing_key":                  randomHex(16),
		"direct_media.server_key":                   "generate",
		"double_puppet.servers":                     map[string]any{},
		"double_puppet.secrets":                     map[string]any{},
		"network.identity.allow_unverified_numbers": true,
	})
	if err != nil {
		return nil, err
	}
	if out, err := b.run(ctx, "-g"); err != nil {
		return nil, fmt.Errorf("failed to write the registration: %w\n%s", err, out)
	}
	return b, nil
}

// run runs the bridge binary once with a flag (-e, -g) and its config paths.
func (b *Bridge) run(ctx context.Context, flag string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.binary, flag, "-c", b.ConfigPath, "-r", b.RegistrationPath)
	cmd.Dir = b.Dir
	return cmd.CombinedOutput()
}

// EditConfig sets keys of the bridge's config.yaml, each a dotted path
// ("appservice.port"), creating maps on the way. The bridge must be stopped.
func (b *Bridge) EditConfig(values map[string]any) error {
	data, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		return fmt.Errorf("failed to read the bridge config: %w", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("failed to parse the bridge config: %w", err)
	}
	for key, value := range values {
		parts := strings.Split(key, ".")
		m := cfg
		for _, part := range parts[:len(parts)-1] {
			next, ok := m[part].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[part] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = value
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(b.ConfigPath, out, 0o600)
}

// ReadConfig returns the value at a dotted path of the bridge's config.yaml.
func (b *Bridge) ReadConfig(key string) (any, error) {
	data, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		return nil, err
	}
	var cur any
	if err := yaml.Unmarshal(data, &cur); err != nil {
		return nil, err
	}
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("config has no %s", key)
		}
		cur = m[part]
	}
	return cur, nil
}

// Start runs the bridge and waits until its appservice says it is ready. Its output
// (JSON logs) is appended to LogPath.
//
// Like a service manager with a restart policy, it starts the bridge again (up to 3
// times) when it exits because the homeserver could not reach it: after a SIGKILL,
// Synapse's appservice recoverer can answer the bridge's start-up ping with a 502
// ("AlreadyCalled") until its request to the killed process times out, longer than
// mautrix waits (30 s).
func (b *Bridge) Start(ctx context.Context) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = b.startOnce(ctx)
		if !errors.Is(err, errPingFailed) || attempt == 3 {
			return err
		}
	}
}

// errPingFailed is wrapped when the bridge exited because its appservice ping failed.
var errPingFailed = errors.New("the homeserver could not reach the bridge")

func (b *Bridge) startOnce(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd != nil {
		return errors.New("the bridge is already running")
	}
	logFile, err := os.OpenFile(b.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(b.binary, "-n", "-c", b.ConfigPath, "-r", b.RegistrationPath)
	cmd.Dir = b.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("failed to start the bridge: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); _ = logFile.Close() }()
	b.cmd, b.exited = cmd, exited

	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+"/_matrix/mau/ready", nil)
		if b.ready(req) {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			b.cmd = nil
			tail := b.LogTail(30)
			if strings.Contains(tail, "Homeserver -> appservice connection is not working\"") {
				return fmt.Errorf("%w: the bridge exited while starting: %v\n%s", errPingFailed, err, tail)
			}
			return fmt.Errorf("the bridge exited while starting: %v\n%s", err, tail)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the bridge was not ready within 60 s:\n%s", b.LogTail(30))
		}
	}
}

// ready says whether the appservice is ready and the network connector has started:
// its callbacks are mounted (bridgev2 serves provisioning before the connector has
// upgraded its tables).
func (b *Bridge) ready(req *http.Request) bool {
	resp, err := b.http.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	probe, _ := http.NewRequestWithContext(req.Context(), http.MethodPost, b.URL+"/_interop/v1/push", nil)
	resp, err = b.http.Do(probe)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound
}

// Kill ends the bridge with SIGKILL, as a crash would, and waits for it to be gone.
func (b *Bridge) Kill() { b.signal(syscall.SIGKILL) }

// Stop ends the bridge with SIGTERM (a clean shutdown), killing it after 20 s.
func (b *Bridge) Stop() { b.signal(syscall.SIGTERM) }

func (b *Bridge) signal(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	_ = syscall.Kill(-b.cmd.Process.Pid, sig)
	select {
	case <-b.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.exited
	}
	b.cmd = nil
}

// Running says whether the process is up.
func (b *Bridge) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cmd != nil
}

// PID is the running process's id, or 0.
func (b *Bridge) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// LogTail returns the last n lines of the bridge's log.
func (b *Bridge) LogTail(n int) string { return tailFile(b.LogPath, n) }

// Provision calls the bridge's provisioning API (path after /_matrix/provision) as
// userID, authorized with token: the user's own Matrix access token, as a client
// would, or ProvisioningSecret.
func (b *Bridge) Provision(ctx context.Context, method, path, userID, token string, body, out any) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	full := b.URL + "/_matrix/provision" + path + sep + "user_id=" + url.QueryEscape(userID)
	return jsonCall(ctx, b.http, method, full, token, body, out)
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}
