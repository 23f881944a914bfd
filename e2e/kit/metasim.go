package kit

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

// IntegratorID is the integrator id the kit's bridge uses on both networks.
const IntegratorID = 7

// MetasimOptions say how to start the simulator.
type MetasimOptions struct {
	// CallbackBase is where the simulator reaches the bridge (callbacks and media).
	CallbackBase string
	// Log receives the simulator's log (JSON); nil discards it.
	Log io.Writer
	// Debug logs at debug level rather than info.
	Debug bool
	// Adjust changes the configuration before the start (limits, say).
	Adjust func(*metasim.Config)
}

// Metasim is a simulator running in this process, with both networks.
type Metasim struct {
	Sim *metasim.Simulator
	// Secrets are the callback secrets per network, for the bridge's config.
	Secrets map[string]string
	Token   string

	http *http.Client
}

// StartMetasim runs the simulator on free 127.0.0.1 ports with an in-memory
// database, both networks and one integrator (IntegratorID) pointing at the bridge.
func StartMetasim(ctx context.Context, o MetasimOptions) (*Metasim, error) {
	cfg := metasim.DefaultConfig()
	cfg.DataDir = ""
	cfg.Database = metasim.MemoryDatabase
	cfg.Control.Listen = "127.0.0.1:0"
	cfg.Media.Listen = "127.0.0.1:0"
	m := &Metasim{Secrets: map[string]string{}, Token: cfg.Control.Token,
		http: &http.Client{Timeout: 150 * time.Second}}
	for _, name := range metasim.Networks() {
		n := cfg.Network(name)
		n.Listen = "127.0.0.1:0"
		secret := randomHex(24)
		m.Secrets[name] = secret
		n.Integrators = []metasim.IntegratorConfig{{ID: IntegratorID, Name: "matrix-meta-interop e2e",
			CallbackBase: o.CallbackBase, MediaOrigin: o.CallbackBase, CallbackSecret: secret}}
	}
	if o.Adjust != nil {
		o.Adjust(&cfg)
	}
	w := o.Log
	if w == nil {
		w = io.Discard
	}
	level := zerolog.InfoLevel
	if o.Debug {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(w).With().Timestamp().Str("component", "metasim").Logger().Level(level)
	sim, err := metasim.New(ctx, cfg, log)
	if err != nil {
		return nil, fmt.Errorf("failed to set up metasim: %w", err)
	}
	if err := sim.Start(ctx); err != nil {
		_ = sim.Close()
		return nil, fmt.Errorf("failed to start metasim: %w", err)
	}
	m.Sim = sim
	return m, nil
}

// Close stops the simulator.
func (m *Metasim) Close() { _ = m.Sim.Close() }

// NetworkConfig is the bridge config for one network of this simulator, as dotted
// keys for Bridge.EditConfig.
func (m *Metasim) NetworkConfig(network string) map[string]any {
	prefix := "network." + network + "."
	return map[string]any{
		prefix + "enabled":         true,
		prefix + "gateway_url":     m.Sim.GatewayURL(network),
		prefix + "integrator_id":   IntegratorID,
		prefix + "callback_secret": m.Secrets[network],
		prefix + "root_public_key": base64.StdEncoding.EncodeToString(m.Sim.RootPublicKey(network)),
	}
}

// Call makes one control API request (metasim/API.md) and decodes a 2xx JSON answer
// into out.
func (m *Metasim) Call(ctx context.Context, method, path string, body, out any) error {
	return jsonCall(ctx, m.http, method, m.Sim.ControlURL()+path, m.Token, body, out)
}

// SimUser is a simulated Meta user.
type SimUser struct {
	JID     string `json:"jid"`
	Network string `json:"network"`
	Number  string `json:"number"`
	m       *Metasim
}

// NewUser creates a simulated WhatsApp user with number (E.164, "+49…") who allows
// the kit's integrator.
func (m *Metasim) NewUser(ctx context.Context, number string, extra map[string]any) (*SimUser, error) {
	body := map[string]any{"number": number, "opt_in": []int{IntegratorID}}
	for k, v := range extra {
		body[k] = v
	}
	u := &SimUser{m: m}
	if err := m.Call(ctx, http.MethodPost, "/v1/users", body, u); err != nil {
		return nil, fmt.Errorf("failed to create simulated user %s: %w", number, err)
	}
	return u, nil
}

// SentMessage is what the control API answers for a send.
type SentMessage struct {
	ID string `json:"id"`
}

// Send sends a message from this user (the body of POST /v1/users/{jid}/messages).
func (u *SimUser) Send(ctx context.Context, body map[string]any) (SentMessage, error) {
	var sent SentMessage
	err := u.m.Call(ctx, http.MethodPost, "/v1/users/"+u.JID+"/messages", body, &sent)
	return sent, err
}

// SendText sends plain text (WhatsApp markup) to a third-party account.
func (u *SimUser) SendText(ctx context.Context, to, text string) (SentMessage, error) {
	return u.Send(ctx, map[string]any{"to": to, "kind": "text", "text": text})
}

// Inbox reads what the user received after seq since, long-polling up to wait for
// something new; query adds filters (kind=text, chat=…).
func (u *SimUser) Inbox(ctx context.Context, since int64, wait time.Duration, query url.Values) ([]map[string]any, int64, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("since", fmt.Sprint(since))
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var resp struct {
		Items []map[string]any `json:"items"`
		Next  int64            `json:"next"`
	}
	if err := u.m.Call(ctx, http.MethodGet, "/v1/users/"+u.JID+"/inbox?"+q.Encode(), nil, &resp); err != nil {
		return nil, since, err
	}
	return resp.Items, resp.Next, nil
}

// WaitInbox long-polls the inbox until match accepts an item, or the timeout.
func (u *SimUser) WaitInbox(ctx context.Context, timeout time.Duration, what string, query url.Values, match func(map[string]any) bool) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var since int64
	var seen []string
	for {
		wait := 10 * time.Second
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = time.Until(dl).Truncate(time.Millisecond)
		}
		if wait <= 0 {
			break
		}
		items, next, err := u.Inbox(ctx, since, wait, query)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return nil, err
		}
		for _, item := range items {
			if match(item) {
				return item, nil
			}
			seen = append(seen, fmt.Sprintf("%v %v %q", item["kind"], item["id"], item["text"]))
		}
		since = next
		if ctx.Err() != nil {
			break
		}
	}
	if len(seen) > 10 {
		seen = seen[len(seen)-10:]
	}
	return nil, fmt.Errorf("%s never reached %s within %s; last items seen: [%s]", what, u.JID, timeout, strings.Join(seen, "; "))
}
