package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"
)

// ErrAdminToken: Synapse refused identity.synapse_admin_token (401/403), so no threepid
// can be checked until the admin fixes it.
var ErrAdminToken = errors.New("the homeserver refused the Synapse admin token: identity.synapse_admin_token is wrong, missing or not a server admin's")

// DefaultTimeout bounds one Synapse admin API call, so that a hung homeserver makes a
// login fail instead of hang.
const DefaultTimeout = 10 * time.Second

// maxUserBody bounds the admin API answer we read; a user record is a few KiB.
const maxUserBody = 1 << 20

// Threepid accepts a number that the homeserver has validated as an msisdn threepid
// of the user, read with Synapse's admin API.
type Threepid struct {
	base   *url.URL
	token  string
	client *http.Client
}

// NewThreepid checks against the homeserver at baseURL (bridgev2's
// homeserver.address) with a server admin's access token. client may be nil for a
// client with DefaultTimeout.
func NewThreepid(baseURL, adminToken string, client *http.Client) (*Threepid, error) {
	if adminToken == "" {
		return nil, ErrAdminToken
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("failed to parse the homeserver address: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("homeserver address %q is not an http(s) URL", baseURL)
	}
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	return &Threepid{base: u, token: adminToken, client: client}, nil
}

// Method is MethodThreepid.
func (t *Threepid) Method() Method { return MethodThreepid }

type synapseThreepid struct {
	Medium      string `json:"medium"`
	Address     string `json:"address"`
	ValidatedAt int64  `json:"validated_at"`
}

type synapseUser struct {
	Name      string            `json:"name"`
	Threepids []synapseThreepid `json:"threepids"`
}

// userURL escapes mxid as one path segment, so that no user ID can steer the request
// to another admin endpoint.
func (t *Threepid) userURL(mxid id.UserID) string {
	u := *t.base
	const endpoint = "/_synapse/admin/v2/users/"
	u.Path = strings.TrimSuffix(u.Path, "/") + endpoint + string(mxid)
	u.RawPath = strings.TrimSuffix(t.base.EscapedPath(), "/") + endpoint + url.PathEscape(string(mxid))
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// VerifyNumber asks Synapse for mxid's threepids and accepts when one is an msisdn
// with exactly number's digits and a validation time. An unknown or non-local user
// is ErrNotVerified; a refused token is ErrAdminToken; anything else that stops the
// check is an error that never counts as proof.
func (t *Threepid) VerifyNumber(ctx context.Context, mxid id.UserID, number string) error {
	number = strings.TrimPrefix(number, "+")
	if number == "" {
		return ErrNotVerified
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.userURL(mxid), nil)
	if err != nil {
		return fmt.Errorf("failed to build the Synapse admin request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	resp, err := t.client.Do(req)
	if err != nil {
		// The url.Error names the URL, never the header, so the token stays out of it.
		return fmt.Errorf("failed to reach the Synapse admin API (check homeserver.address and identity.synapse_admin_token): %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUserBody))
	if err != nil {
		return fmt.Errorf("failed to read the Synapse admin API answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w (HTTP %d)", ErrAdminToken, resp.StatusCode)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: the homeserver has no user %s", ErrNotVerified, mxid)
	case resp.StatusCode == http.StatusBadRequest:
		// Synapse answers 400 for users of other homeservers, which cannot hold its threepids.
		return fmt.Errorf("%w: %s is not a user of this homeserver", ErrNotVerified, mxid)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("failed to look up the user on Synapse: HTTP %d", resp.StatusCode)
	}
	var user synapseUser
	if err := json.Unmarshal(body, &user); err != nil {
		return fmt.Errorf("failed to decode the Synapse admin API answer: %w", err)
	}
	if user.Name != "" && user.Name != string(mxid) {
		return fmt.Errorf("the Synapse admin API answered for %s when asked for %s", user.Name, mxid)
	}
	for _, tp := range user.Threepids {
		if tp.Medium == "msisdn" && tp.ValidatedAt > 0 && strings.TrimPrefix(tp.Address, "+") == number {
			return nil
		}
	}
	return ErrNotVerified
}
