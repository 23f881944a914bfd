// Package callback is the gateway's side of the provider HTTP callbacks of
// PROTOCOL.md section 9: the auth check of a login token and the push that tells a
// provider an offline account has stanzas waiting. Every request is signed with the
// integrator's callback secret by interop/callback, the package providers verify with.
//
// It knows nothing about stanzas or connections; it must not import the stanza codec,
// the socket or the gateway.
package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	icb "github.com/matrix-meta-interop/matrix-meta-interop/interop/callback"
)

// Paths under an integrator's callback base.
const (
	AuthPath = "/_interop/v1/auth"
	PushPath = "/_interop/v1/push"
)

// Headers of a signed request (interop/callback signs and verifies them).
const (
	HeaderTimestamp = icb.HeaderTimestamp
	HeaderSignature = icb.HeaderSignature
)

// maxAnswer bounds what is read of a provider's answer.
const maxAnswer = 64 << 10

// ErrInvalidToken: the provider said the token is not valid (401, or valid=false).
var ErrInvalidToken = errors.New("token refused by the provider")

// Client makes the signed callbacks.
type Client struct {
	HTTP *http.Client
	Now  func() time.Time
}

// AuthAnswer is a provider's answer to a valid token.
type AuthAnswer struct {
	Valid     bool  `json:"valid"`
	ExpiresAt int64 `json:"expires_at"`
}

// Auth asks the provider at base whether token is valid for account. It returns when
// the token expires (zero when the provider gave no end), ErrInvalidToken for a
// refused token, or another error when the provider could not be asked.
func (c *Client) Auth(ctx context.Context, base string, secret []byte, account, token string) (time.Time, error) {
	body, err := json.Marshal(map[string]string{"jid": account, "token": token})
	if err != nil {
		return time.Time{}, fmt.Errorf("failed to encode auth request: %w", err)
	}
	status, answer, err := c.post(ctx, joinURL(base, AuthPath), secret, body)
	if err != nil {
		return time.Time{}, err
	}
	switch status {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return time.Time{}, ErrInvalidToken
	default:
		return time.Time{}, fmt.Errorf("auth callback answered HTTP %d", status)
	}
	var a AuthAnswer
	if err := json.Unmarshal(answer, &a); err != nil {
		return time.Time{}, fmt.Errorf("failed to decode auth answer: %w", err)
	}
	if !a.Valid {
		return time.Time{}, ErrInvalidToken
	}
	if a.ExpiresAt <= 0 {
		return time.Time{}, nil
	}
	return time.Unix(a.ExpiresAt, 0), nil
}

// Push tells the provider at base that account has pending stanzas waiting.
func (c *Client) Push(ctx context.Context, base string, secret []byte, account string, pending int) error {
	body, err := json.Marshal(struct {
		JID     string `json:"jid"`
		Pending int    `json:"pending"`
	}{account, pending})
	if err != nil {
		return fmt.Errorf("failed to encode push: %w", err)
	}
	status, _, err := c.post(ctx, joinURL(base, PushPath), secret, body)
	if err != nil {
		return err
	}
	if status != http.StatusAccepted && status != http.StatusOK && status != http.StatusNoContent {
		return fmt.Errorf("push callback answered HTTP %d", status)
	}
	return nil
}

func (c *Client) post(ctx context.Context, url string, secret, body []byte) (int, []byte, error) {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("failed to build callback request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	icb.SignRequest(req, secret, body, now())
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("failed to call provider: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("failed to read provider answer: %w", err)
	}
	return resp.StatusCode, answer, nil
}

func joinURL(base, path string) string { return strings.TrimRight(base, "/") + path }
