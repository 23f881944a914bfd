//go:build synapse

// The check against the real Synapse (run as root: `go test -tags goolm,synapse
// ./connector/verify`). It starts Synapse from scripts/synapse-chroot.sh on a free
// port, so it is kept out of the default run, which many engineers repeat.

package verify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

const synapseSecret = "verify-test-registration-secret"

type realSynapse struct {
	url    string
	client *http.Client
}

// startSynapse runs Synapse inside the cached chroot with its own config and SQLite
// database, and stops it (by its process group) when the test ends.
func startSynapse(t *testing.T) *realSynapse {
	t.Helper()
	out, err := exec.Command("bash", "../../scripts/synapse-chroot.sh").Output()
	if err != nil {
		t.Fatalf("failed to get the Synapse chroot: %v", err)
	}
	root := strings.TrimSpace(string(out))
	dir, err := os.MkdirTemp(filepath.Join(root, "tmp"), "verify-synapse-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	inside := "/tmp/" + filepath.Base(dir)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()

	cfg := fmt.Sprintf(`server_name: "example.org"
pid_file: %[1]s/hs.pid
listeners:
  - port: %[2]d
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
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
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
`, inside, port, synapseSecret)
	if err := os.WriteFile(filepath.Join(dir, "hs.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	synapse := func(args ...string) *exec.Cmd {
		cmd := exec.Command("chroot", append([]string{root, "python3", "-m", "synapse.app.homeserver", "-c", inside + "/hs.yaml"}, args...)...)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd
	}
	if out, err := synapse("--generate-keys").CombinedOutput(); err != nil {
		t.Fatalf("failed to generate Synapse keys: %v\n%s", err, out)
	}
	logFile, err := os.Create(filepath.Join(dir, "synapse.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := synapse()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("failed to start Synapse: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		_ = logFile.Close()
	})

	s := &realSynapse{url: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 10 * time.Second}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := s.client.Get(s.url + "/_matrix/client/versions")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "synapse.log"))
			t.Fatalf("Synapse exited: %v\n%s", err, log)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("Synapse did not start within 60 s")
		}
	}
}

// call does one JSON request and decodes the answer into out, failing on a non-2xx.
func (s *realSynapse) call(t *testing.T, method, path, token string, body, out any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: HTTP %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// registerAdmin creates a server admin with the shared-secret registration API and
// returns its access token.
func (s *realSynapse) registerAdmin(t *testing.T, localpart string) string {
	var nonce struct{ Nonce string }
	s.call(t, http.MethodGet, "/_synapse/admin/v1/register", "", nil, &nonce)
	const password = "admin-password-0"
	mac := hmac.New(sha1.New, []byte(synapseSecret))
	mac.Write([]byte(nonce.Nonce + "\x00" + localpart + "\x00" + password + "\x00admin"))
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	s.call(t, http.MethodPost, "/_synapse/admin/v1/register", "", map[string]any{
		"nonce": nonce.Nonce, "username": localpart, "password": password, "admin": true,
		"mac": hex.EncodeToString(mac.Sum(nil)),
	}, &resp)
	return resp.AccessToken
}

func TestThreepidAgainstRealSynapse(t *testing.T) {
	s := startSynapse(t)
	adminTok := s.registerAdmin(t, "admin")
	// Synapse's admin API stores the threepids it is given as validated.
	s.call(t, http.MethodPut, "/_synapse/admin/v2/users/@alice:example.org", adminTok, map[string]any{
		"password": "alice-password-0",
		"threepids": []map[string]string{
			{"medium": "msisdn", "address": "491701234567"},
			{"medium": "email", "address": "alice@example.org"},
		},
	}, nil)
	s.call(t, http.MethodPut, "/_synapse/admin/v2/users/@bob:example.org", adminTok, map[string]any{
		"password":  "bob-password-0",
		"threepids": []map[string]string{{"medium": "msisdn", "address": "491709999999"}},
	}, nil)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	s.call(t, http.MethodPost, "/_matrix/client/v3/login", "", map[string]any{
		"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": "alice"},
		"password": "alice-password-0",
	}, &login)

	v, err := NewThreepid(s.url, adminTok, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mxid   id.UserID
		number string
		want   error
	}{
		{"own verified msisdn", "@alice:example.org", "491701234567", nil},
		{"own number with +", "@alice:example.org", "+491701234567", nil},
		{"another user's number", "@alice:example.org", "491709999999", ErrNotVerified},
		{"number never added", "@alice:example.org", "491700000000", ErrNotVerified},
		{"other user, own number", "@bob:example.org", "491709999999", nil},
		{"unknown user", "@ghost:example.org", "491701234567", ErrNotVerified},
		{"remote user", "@alice:elsewhere.org", "491701234567", ErrNotVerified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.VerifyNumber(ctx, tc.mxid, tc.number)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("VerifyNumber = %v, want %v", err, tc.want)
			}
		})
	}

	for name, token := range map[string]string{"unknown token": "syt_not_a_token", "non-admin token": login.AccessToken} {
		t.Run(name, func(t *testing.T) {
			bad, err := NewThreepid(s.url, token, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = bad.VerifyNumber(ctx, "@alice:example.org", "491701234567")
			if !errors.Is(err, ErrAdminToken) {
				t.Fatalf("VerifyNumber = %v, want ErrAdminToken", err)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q leaks the token", err)
			}
		})
	}
}
