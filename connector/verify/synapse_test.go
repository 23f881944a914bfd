//go:build synapse

// The check against the real Synapse (run as root: `go test -tags goolm,synapse
// ./connector/verify`). It starts Synapse with the end-to-end kit (the cached chroot
// of scripts/synapse-chroot.sh, a free port), so it is kept out of the default run.

package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

type realSynapse struct {
	*kit.Synapse
	client *http.Client
}

// startSynapse runs Synapse from the cached chroot (through the end-to-end kit) and
// stops it when the test ends.
func startSynapse(t *testing.T) *realSynapse {
	t.Helper()
	root, err := kit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	s, err := kit.StartSynapse(context.Background(), kit.SynapseOptions{ServerName: "example.org", RepoRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &realSynapse{Synapse: s, client: &http.Client{Timeout: 10 * time.Second}}
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
	req, _ := http.NewRequest(method, s.URL+path, rd)
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

// registerAdmin creates a server admin and returns its access token.
func (s *realSynapse) registerAdmin(t *testing.T, localpart string) string {
	t.Helper()
	token, err := s.RegisterUser(context.Background(), localpart, "admin-password-0", true)
	if err != nil {
		t.Fatal(err)
	}
	return token
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

	v, err := NewThreepid(s.URL, adminTok, nil)
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
			bad, err := NewThreepid(s.URL, token, nil)
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
