package verify

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

const adminToken = "syt_admin_secret_token"

// fakeSynapse plays Synapse's GET /_synapse/admin/v2/users/{user_id}.
type fakeSynapse struct {
	mu       sync.Mutex
	users    map[string]any // user ID → JSON answer
	status   int            // forced status, when not 0
	delay    time.Duration
	lastPath string
}

func (f *fakeSynapse) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.lastPath = r.URL.EscapedPath()
	status, delay := f.status, f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+adminToken {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token passed."}`))
		return
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	const prefix = "/_synapse/admin/v2/users/"
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, prefix) {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	mxid := strings.TrimPrefix(r.URL.Path, prefix)
	if !strings.HasSuffix(mxid, ":example.org") {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN","error":"Can only look up local users"}`))
		return
	}
	f.mu.Lock()
	user, ok := f.users[mxid]
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"User not found"}`))
		return
	}
	_ = json.NewEncoder(w).Encode(user)
}

func synapseUserJSON(name string, threepids ...map[string]any) map[string]any {
	if threepids == nil {
		threepids = []map[string]any{}
	}
	return map[string]any{"name": name, "admin": false, "deactivated": false, "threepids": threepids}
}

func tp(medium, address string, validatedAt int64) map[string]any {
	m := map[string]any{"medium": medium, "address": address, "added_at": 1_600_000_000_000}
	if validatedAt >= 0 {
		m["validated_at"] = validatedAt
	}
	return m
}

func TestThreepid(t *testing.T) {
	const alice, bob = id.UserID("@alice:example.org"), id.UserID("@bob:example.org")
	fake := &fakeSynapse{users: map[string]any{
		string(alice): synapseUserJSON(string(alice),
			tp("email", "491701111111", 1_600_000_000_001), // an email "address" that looks like a number
			tp("msisdn", "491701234567", 1_600_000_000_001),
			tp("msisdn", "+33612345678", 1_600_000_000_001), // tolerate a stored "+"
			tp("msisdn", "491702222222", 0),                 // not validated
			tp("msisdn", "491703333333", -1),                // no validated_at at all
		),
		string(bob):           synapseUserJSON(string(bob), tp("msisdn", "491709999999", 1_600_000_000_001)),
		"@nobody:example.org": synapseUserJSON("@nobody:example.org"),
	}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	v, err := NewThreepid(srv.URL+"/", adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Method() != MethodThreepid {
		t.Fatalf("Method = %q", v.Method())
	}
	for _, tc := range []struct {
		name   string
		mxid   id.UserID
		number string
		want   error // nil: accepted
	}{
		{"validated msisdn", alice, "491701234567", nil},
		{"validated msisdn, number with +", alice, "+491701234567", nil},
		{"stored with +", alice, "33612345678", nil},
		{"unvalidated msisdn", alice, "491702222222", ErrNotVerified},
		{"msisdn without validated_at", alice, "491703333333", ErrNotVerified},
		{"email threepid ignored", alice, "491701111111", ErrNotVerified},
		{"another user's number", alice, "491709999999", ErrNotVerified},
		{"prefix of a verified number", alice, "49170123456", ErrNotVerified},
		{"extension of a verified number", alice, "4917012345678", ErrNotVerified},
		{"empty number", alice, "", ErrNotVerified},
		{"owner of the other number", bob, "491709999999", nil},
		{"user without threepids", "@nobody:example.org", "491701234567", ErrNotVerified},
		{"unknown user (404)", "@ghost:example.org", "491701234567", ErrNotVerified},
		{"remote user (400)", "@alice:elsewhere.org", "491701234567", ErrNotVerified},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.VerifyNumber(context.Background(), tc.mxid, tc.number)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("VerifyNumber = %v, want %v", err, tc.want)
			}
		})
	}

	// The user ID is one escaped path segment: a "/" cannot reach another endpoint.
	_ = v.VerifyNumber(context.Background(), "@a/../../v1/x:example.org", "491701234567")
	if fake.lastPath != "/_synapse/admin/v2/users/@a%2F..%2F..%2Fv1%2Fx:example.org" {
		t.Errorf("requested path %q", fake.lastPath)
	}
}

// TestThreepidFailures: a check that cannot be made is an error, never proof and never
// a plain "not verified", and the error never carries the token.
func TestThreepidFailures(t *testing.T) {
	const alice = id.UserID("@alice:example.org")
	fake := &fakeSynapse{users: map[string]any{
		string(alice): synapseUserJSON(string(alice), tp("msisdn", "491701234567", 1)),
	}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, tc := range []struct {
		name     string
		url      string
		token    string
		status   int
		delay    time.Duration
		wantErr  error  // errors.Is target, if any
		wantText string // substring of the error
	}{
		{"wrong token (401)", srv.URL, "syt_wrong", 0, 0, ErrAdminToken, "HTTP 401"},
		{"not an admin (403)", srv.URL, adminToken, http.StatusForbidden, 0, ErrAdminToken, "HTTP 403"},
		{"server error", srv.URL, adminToken, http.StatusInternalServerError, 0, nil, "HTTP 500"},
		{"unreachable", closedURL, adminToken, 0, 0, nil, "failed to reach the Synapse admin API"},
		{"timeout", srv.URL, adminToken, 0, 2 * time.Second, nil, "failed to reach the Synapse admin API"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.mu.Lock()
			fake.status, fake.delay = tc.status, tc.delay
			fake.mu.Unlock()
			defer func() {
				fake.mu.Lock()
				fake.status, fake.delay = 0, 0
				fake.mu.Unlock()
			}()
			v, err := NewThreepid(tc.url, tc.token, &http.Client{Timeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = v.VerifyNumber(context.Background(), alice, "491701234567")
			if err == nil || errors.Is(err, ErrNotVerified) {
				t.Fatalf("VerifyNumber = %v, want a failed check", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v is not %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not say %q", err, tc.wantText)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Errorf("error %q leaks the token", err)
			}
			if time.Since(start) > time.Second {
				t.Errorf("check took %s despite the client timeout", time.Since(start))
			}
		})
	}

	// A cancelled context also stops the check.
	v, _ := NewThreepid(srv.URL, adminToken, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.VerifyNumber(ctx, alice, "491701234567"); err == nil || errors.Is(err, ErrNotVerified) {
		t.Errorf("VerifyNumber with a cancelled context = %v", err)
	}
}

func TestNewThreepid(t *testing.T) {
	for _, tc := range []struct {
		url, token string
		ok         bool
	}{
		{"https://matrix.example.org", adminToken, true},
		{"http://127.0.0.1:8008/", adminToken, true},
		{"https://matrix.example.org", "", false},
		{"matrix.example.org", adminToken, false},
		{"ftp://matrix.example.org", adminToken, false},
		{"http://%zz", adminToken, false},
	} {
		_, err := NewThreepid(tc.url, tc.token, nil)
		if (err == nil) != tc.ok {
			t.Errorf("NewThreepid(%q, %q) = %v, want ok=%v", tc.url, tc.token, err, tc.ok)
		}
		if tc.token == "" && !errors.Is(err, ErrAdminToken) {
			t.Errorf("missing token gave %v, want ErrAdminToken", err)
		}
	}
}

func TestThreepidKeepsBasePath(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Path
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	v, err := NewThreepid(srv.URL+"/matrix/?x=1", adminToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyNumber(context.Background(), "@alice:example.org", "4917"); !errors.Is(err, ErrNotVerified) {
		t.Fatalf("VerifyNumber = %v", err)
	}
	if got != "/matrix/_synapse/admin/v2/users/@alice:example.org" {
		t.Errorf("path %q", got)
	}
}

// TestThreepidOddAnswers: whatever Synapse (or something posing as it) answers, the
// check fails cleanly and never accepts by accident.
func TestThreepidOddAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, body string
	}{
		{"not JSON", `<html>gateway error</html>`},
		{"threepids of the wrong type", `{"name":"@alice:example.org","threepids":{"msisdn":"491701234567"}}`},
		{"another user's record", `{"name":"@mallory:example.org","threepids":[{"medium":"msisdn","address":"491701234567","validated_at":1}]}`},
		{"oversized", `{"name":"@alice:example.org","padding":"` + strings.Repeat("x", maxUserBody) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			v, err := NewThreepid(srv.URL, adminToken, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = v.VerifyNumber(context.Background(), "@alice:example.org", "491701234567")
			if err == nil || errors.Is(err, ErrNotVerified) {
				t.Fatalf("VerifyNumber = %v, want a failed check", err)
			}
		})
	}
}
