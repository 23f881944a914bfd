// Package kit starts the real parts of an end-to-end run on 127.0.0.1: Synapse from
// the cached Debian sid chroot, metasim in process, and the bridge as its own process;
// it registers Matrix users and waits for what they see. The tests in e2e/ and the
// demo command use it; everything returns errors so that both can.
package kit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SynapseOptions say how to start Synapse.
type SynapseOptions struct {
	// ServerName is the homeserver's name (the part after the colon in user IDs).
	ServerName string
	// Registrations are appservice registration files to install (paths outside the
	// chroot; they are copied in).
	Registrations []string
	// RepoRoot is the checkout holding scripts/synapse-chroot.sh.
	RepoRoot string
	// Progress, when set, receives the chroot build's progress lines (first run only).
	Progress io.Writer
	// ExtraConfig is YAML with more top-level keys for Synapse's config.
	ExtraConfig string
}

// Synapse is a running homeserver.
type Synapse struct {
	URL        string
	ServerName string
	// LogPath is Synapse's log file, for dumping after a failure.
	LogPath string
	// Secret is the shared registration secret.
	Secret string

	dir    string
	cmd    *exec.Cmd
	exited chan error
	once   sync.Once
	http   *http.Client
}

// ChrootRoot builds the Synapse chroot on first use (about a minute) and returns its
// path.
func ChrootRoot(repoRoot string, progress io.Writer) (string, error) {
	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "synapse-chroot.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if progress != nil {
		cmd.Stderr = io.MultiWriter(&stderr, progress)
	}
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("failed to build the Synapse chroot: %w\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// synapseOverrides is the second config file: its top-level keys replace the
// generated ones. Every rate limit is raised so tests measure the bridge, not
// Synapse's limiter.
const synapseOverrides = `
enable_registration: false
bcrypt_rounds: 4
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
url_preview_enabled: false
max_upload_size: 200M
presence:
  enabled: false
rc_message: {per_second: 10000, burst_count: 10000}
rc_registration: {per_second: 10000, burst_count: 10000}
rc_registration_token_validity: {per_second: 10000, burst_count: 10000}
rc_login:
  address: {per_second: 10000, burst_count: 10000}
  account: {per_second: 10000, burst_count: 10000}
  failed_attempts: {per_second: 10000, burst_count: 10000}
rc_admin_redaction: {per_second: 10000, burst_count: 10000}
rc_joins:
  local: {per_second: 10000, burst_count: 10000}
  remote: {per_second: 10000, burst_count: 10000}
rc_joins_per_room: {per_second: 10000, burst_count: 10000}
rc_invites:
  per_room: {per_second: 10000, burst_count: 10000}
  per_user: {per_second: 10000, burst_count: 10000}
  per_issuer: {per_second: 10000, burst_count: 10000}
rc_3pid_validation: {per_second: 10000, burst_count: 10000}
rc_media_create: {per_second: 10000, burst_count: 10000}
rc_room_creation: {per_second: 10000, burst_count: 10000}
rc_reports: {per_second: 10000, burst_count: 10000}
rc_presence:
  per_user: {per_second: 10000, burst_count: 10000}
rc_delayed_event_mgmt: {per_second: 10000, burst_count: 10000}
`

// StartSynapse runs Synapse inside the cached chroot with its own SQLite database on
// a free port, and waits until it answers. Stop it with Stop.
func StartSynapse(ctx context.Context, o SynapseOptions) (*Synapse, error) {
	root, err := ChrootRoot(o.RepoRoot, o.Progress)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Join(root, "tmp"), "e2e-synapse-")
	if err != nil {
		return nil, fmt.Errorf("failed to make Synapse's folder: %w", err)
	}
	inside := "/tmp/" + filepath.Base(dir)
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &Synapse{
		URL:        fmt.Sprintf("http://127.0.0.1:%d", port),
		ServerName: o.ServerName,
		LogPath:    filepath.Join(dir, "synapse.log"),
		Secret:     randomHex(16),
		dir:        dir,
		exited:     make(chan error, 1),
		http:       &http.Client{Timeout: 30 * time.Second},
	}
	var regs []string
	for i, reg := range o.Registrations {
		data, err := os.ReadFile(reg)
		if err != nil {
			return nil, fmt.Errorf("failed to read registration: %w", err)
		}
		name := fmt.Sprintf("registration-%d.yaml", i)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, err
		}
		regs = append(regs, fmt.Sprintf("%q", inside+"/"+name))
	}
	cfg := fmt.Sprintf(`server_name: %[4]q
pid_file: %[1]s/hs.pid
listeners:
  - port: %[2]d
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: %[1]s/hs.db
media_store_path: %[1]s/media
signing_key_path: %[1]s/signing.key
registration_shared_secret: %[3]q
app_service_config_files: [%[5]s]
log_config: %[1]s/log.yaml
`, inside, port, s.Secret, o.ServerName, strings.Join(regs, ", "))
	logCfg := fmt.Sprintf(`version: 1
formatters:
  precise:
    format: '%%(asctime)s - %%(name)s - %%(lineno)d - %%(levelname)s - %%(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: %s/synapse.log
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
`, inside)
	for name, data := range map[string]string{"hs.yaml": cfg, "overrides.yaml": synapseOverrides + o.ExtraConfig, "log.yaml": logCfg} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			return nil, fmt.Errorf("failed to write Synapse's config: %w", err)
		}
	}
	synapse := func(args ...string) *exec.Cmd {
		cmd := exec.Command("chroot", append([]string{root, "python3", "-m", "synapse.app.homeserver",
			"-c", inside + "/hs.yaml", "-c", inside + "/overrides.yaml"}, args...)...)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	}
	if out, err := synapse("--generate-keys").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("failed to generate Synapse's keys: %w\n%s", err, out)
	}
	stdout, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = synapse()
	s.cmd.Stdout, s.cmd.Stderr = stdout, stdout
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start Synapse: %w", err)
	}
	go func() { s.exited <- s.cmd.Wait(); _ = stdout.Close() }()

	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/_matrix/client/versions", nil)
		resp, err := s.http.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.exited:
			s.exited <- err
			out, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
			return nil, fmt.Errorf("synapse exited while starting: %v\n%s\n%s", err, out, s.LogTail(40))
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("synapse did not answer within 90 s:\n%s", s.LogTail(40))
		}
	}
}

// Stop ends Synapse (its whole process group, by PID) and removes its folder.
func (s *Synapse) Stop() {
	s.once.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.exited
			}
		}
		_ = os.RemoveAll(s.dir)
	})
}

// LogTail returns the last n lines of Synapse's log.
func (s *Synapse) LogTail(n int) string { return tailFile(s.LogPath, n) }

// RegisterUser creates a user with the shared-secret registration API and returns
// its access token.
func (s *Synapse) RegisterUser(ctx context.Context, localpart, password string, admin bool) (string, error) {
	token, _, err := s.registerUser(ctx, localpart, password, admin)
	return token, err
}

// registerUser registers and returns the access token and its device ID.
func (s *Synapse) registerUser(ctx context.Context, localpart, password string, admin bool) (string, string, error) {
	var nonce struct{ Nonce string }
	if err := s.call(ctx, http.MethodGet, "/_synapse/admin/v1/register", "", nil, &nonce); err != nil {
		return "", "", err
	}
	mac := hmac.New(sha1.New, []byte(s.Secret))
	mac.Write([]byte(nonce.Nonce + "\x00" + localpart + "\x00" + password + "\x00"))
	if admin {
		mac.Write([]byte("admin"))
	} else {
		mac.Write([]byte("notadmin"))
	}
	var resp struct {
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	err := s.call(ctx, http.MethodPost, "/_synapse/admin/v1/register", "", map[string]any{
		"nonce": nonce.Nonce, "username": localpart, "password": password, "admin": admin,
		"mac": hex.EncodeToString(mac.Sum(nil)),
	}, &resp)
	if err != nil {
		return "", "", fmt.Errorf("failed to register %s: %w", localpart, err)
	}
	return resp.AccessToken, resp.DeviceID, nil
}

// call does one JSON request and decodes the answer into out, failing on a non-2xx.
func (s *Synapse) call(ctx context.Context, method, path, token string, body, out any) error {
	return jsonCall(ctx, s.http, method, s.URL+path, token, body, out)
}

// jsonCall does one JSON request and decodes a 2xx answer into out.
func jsonCall(ctx context.Context, client *http.Client, method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, redactQuery(url), err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		return &HTTPError{Method: method, URL: redactQuery(url), Status: resp.StatusCode, Body: string(raw)}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: failed to decode the answer: %w", method, redactQuery(url), err)
		}
	}
	return nil
}

// HTTPError is a non-2xx answer.
type HTTPError struct {
	Method, URL string
	Status      int
	Body        string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.URL, e.Status, truncate(e.Body, 500))
}

// StatusOf returns the HTTP status of an *HTTPError, or 0.
func StatusOf(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	return 0
}

func redactQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("failed to find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log at %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
