package kit

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	_ "github.com/lib/pq"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

// ServerName is the kit homeserver's name.
const ServerName = "e2e.localhost"

// StackOptions say how to start the whole stack.
type StackOptions struct {
	RepoRoot string
	// BridgeBinary is the built bridge (BuildBridge).
	BridgeBinary string
	// Dir holds the bridge's files; it must exist.
	Dir string
	// Postgres, when set, is a PostgreSQL server DSN: the bridge gets a fresh
	// database on it (dropped by Close). Empty: SQLite.
	Postgres string
	// Metasim adjusts the simulator's configuration.
	Metasim func(*metasim.Config)
	// BridgeConfig are extra dotted config keys for the bridge.
	BridgeConfig map[string]any
	// Admins are Matrix user IDs with bridge admin permission.
	Admins []string
	// Progress receives the Synapse chroot build's progress (first run only).
	Progress io.Writer
	// MetasimLog receives the simulator's log.
	MetasimLog io.Writer
	// MetasimDebug logs the simulator at debug level.
	MetasimDebug bool
	// TransactionProxy, when set, stands between Synapse and the bridge's appservice
	// listener: Synapse's registration points at a proxy that hands each request to
	// TransactionProxy(forward), forward being the way on to the bridge. Tests use it
	// to lose a transaction as a homeserver bug would.
	TransactionProxy func(forward http.Handler) http.Handler
	// DoublePuppet installs a second appservice registration whose token lets the
	// bridge act as any local user (the double puppeting setup of mautrix bridges),
	// and gives the bridge its as_token secret.
	DoublePuppet bool
	// DirectMedia turns on bridgev2's direct media: the bridge's media server is a
	// TLS front on 127.0.0.1 (MediaServer) that Synapse fetches from over federation.
	DirectMedia bool
}

// Stack is Synapse, metasim and the bridge, running on 127.0.0.1.
type Stack struct {
	Synapse *Synapse
	Sim     *Metasim
	Bridge  *Bridge

	// MediaServer is the server name of the bridge's direct media URIs, with
	// StackOptions.DirectMedia.
	MediaServer string

	dropDB     func()
	proxy      *http.Server
	mediaFront *http.Server
}

// StartStack starts metasim (in process), then writes the bridge's config and
// registration, starts Synapse with that registration, and starts the bridge.
func StartStack(ctx context.Context, o StackOptions) (st *Stack, err error) {
	st = &Stack{}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	bo := BridgeOptions{Binary: o.BridgeBinary, Dir: filepath.Join(o.Dir, "bridge"), ServerName: ServerName, Admins: o.Admins}
	if o.Postgres != "" {
		bo.Database, st.dropDB, err = freshPostgres(ctx, o.Postgres)
		if err != nil {
			return st, err
		}
	}
	// Synapse's port is only known once it runs, and Synapse needs the registration
	// first: the homeserver address is filled in after it starts.
	bo.HomeserverURL = "http://127.0.0.1:1"
	st.Bridge, err = PrepareBridge(ctx, bo)
	if err != nil {
		return st, err
	}
	st.Sim, err = StartMetasim(ctx, MetasimOptions{CallbackBase: st.Bridge.URL, Adjust: o.Metasim, Log: o.MetasimLog, Debug: o.MetasimDebug})
	if err != nil {
		return st, err
	}
	registrations := []string{st.Bridge.RegistrationPath}
	if o.TransactionProxy != nil {
		if st.proxy, err = proxyRegistration(st.Bridge, o.TransactionProxy); err != nil {
			return st, err
		}
	}
	values := map[string]any{}
	if o.DoublePuppet {
		path, token, err := writeDoublePuppetRegistration(o.Dir)
		if err != nil {
			return st, err
		}
		registrations = append(registrations, path)
		values["double_puppet.secrets"] = map[string]any{ServerName: "as_token:" + token}
	}
	so := SynapseOptions{ServerName: ServerName, Registrations: registrations, RepoRoot: o.RepoRoot, Progress: o.Progress}
	if o.DirectMedia {
		if st.mediaFront, st.MediaServer, err = startMediaFront(st.Bridge.URL); err != nil {
			return st, err
		}
		so.ExtraConfig = directMediaSynapseConfig
		values["direct_media.enabled"] = true
		values["direct_media.server_name"] = st.MediaServer
	}
	st.Synapse, err = StartSynapse(ctx, so)
	if err != nil {
		return st, err
	}
	values["homeserver.address"] = st.Synapse.URL
	for k, v := range st.Sim.NetworkConfig("whatsapp") {
		values[k] = v
	}
	for k, v := range st.Sim.NetworkConfig("messenger") {
		values[k] = v
	}
	for k, v := range o.BridgeConfig {
		values[k] = v
	}
	if err = st.Bridge.EditConfig(values); err != nil {
		return st, err
	}
	if err = st.Bridge.Start(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// Close stops everything the stack started.
func (st *Stack) Close() {
	if st.Bridge != nil {
		st.Bridge.Stop()
	}
	if st.Synapse != nil {
		st.Synapse.Stop()
	}
	if st.proxy != nil {
		_ = st.proxy.Close()
	}
	if st.mediaFront != nil {
		_ = st.mediaFront.Close()
	}
	if st.Sim != nil {
		st.Sim.Close()
	}
	if st.dropDB != nil {
		st.dropDB()
	}
}

// Logs returns the tails of the bridge's and Synapse's logs, for a failure report.
func (st *Stack) Logs(n int) string {
	var b strings.Builder
	if st.Bridge != nil {
		fmt.Fprintf(&b, "--- bridge log (last %d lines) ---\n%s\n", n, st.Bridge.LogTail(n))
	}
	if st.Synapse != nil {
		fmt.Fprintf(&b, "--- synapse log (last %d lines) ---\n%s\n", n, st.Synapse.LogTail(n))
	}
	return b.String()
}

// freshPostgres creates an empty database on the server and returns its DSN and a
// function that drops it.
func freshPostgres(ctx context.Context, serverDSN string) (string, func(), error) {
	admin, err := sql.Open("postgres", serverDSN)
	if err != nil {
		return "", nil, err
	}
	name := "e2e_" + randomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		return "", nil, fmt.Errorf("failed to create a PostgreSQL database for the bridge (is PostgreSQL running at %s?): %w", redactDSN(serverDSN), err)
	}
	u, err := url.Parse(serverDSN)
	if err != nil {
		_ = admin.Close()
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		_ = admin.Close()
	}
	return u.String(), drop, nil
}

func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable DSN)"
	}
	return u.Redacted()
}

// LoginStep is the bridge's answer to a login start or step.
type LoginStep struct {
	LoginID      string `json:"login_id"`
	Type         string `json:"type"`
	StepID       string `json:"step_id"`
	Instructions string `json:"instructions"`
	Complete     *struct {
		UserLoginID string `json:"user_login_id"`
	} `json:"complete"`
}

// LoginBridge logs u in to the bridge with number on network through the
// provisioning API, authorized with u's own access token as a client would be.
// It returns the login's ID.
func (st *Stack) LoginBridge(ctx context.Context, u *User, network, number string) (string, error) {
	var start LoginStep
	if err := st.Bridge.Provision(ctx, http.MethodPost, "/v3/login/start/phone-number", u.ID.String(), u.Client.AccessToken, map[string]any{}, &start); err != nil {
		return "", fmt.Errorf("failed to start the login: %w", err)
	}
	var done LoginStep
	path := fmt.Sprintf("/v3/login/step/%s/%s/user_input", url.PathEscape(start.LoginID), url.PathEscape(start.StepID))
	if err := st.Bridge.Provision(ctx, http.MethodPost, path, u.ID.String(), u.Client.AccessToken,
		map[string]string{"network": network, "phone_number": number}, &done); err != nil {
		return "", fmt.Errorf("failed to submit the number: %w", err)
	}
	if done.Complete == nil {
		return "", fmt.Errorf("the login did not complete: step %s (%s)", done.StepID, done.Instructions)
	}
	return done.Complete.UserLoginID, nil
}

// StartChat asks the bridge for a DM with a phone number on a login and returns the
// portal room.
func (st *Stack) StartChat(ctx context.Context, u *User, loginID, number string) (id.RoomID, error) {
	var resp struct {
		ID     string    `json:"id"`
		MXID   id.UserID `json:"mxid"`
		RoomID id.RoomID `json:"dm_room_mxid"`
	}
	path := "/v3/create_dm/" + url.PathEscape(number) + "?login_id=" + url.QueryEscape(loginID)
	if err := st.Bridge.Provision(ctx, http.MethodPost, path, u.ID.String(), u.Client.AccessToken, map[string]any{}, &resp); err != nil {
		return "", fmt.Errorf("failed to start a chat with %s: %w", number, err)
	}
	return resp.RoomID, nil
}

// WaitLoginState waits until the bridge reports login loginID of u in the bridge
// state stateEvent (CONNECTED, BAD_CREDENTIALS…), as a client sees it in the
// provisioning API's whoami, and returns the state's error code.
func (st *Stack) WaitLoginState(ctx context.Context, u *User, loginID, stateEvent string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	last := "(no such login)"
	for {
		var who struct {
			Logins []struct {
				ID    string `json:"id"`
				State struct {
					StateEvent string `json:"state_event"`
					Error      string `json:"error"`
					Message    string `json:"message"`
				} `json:"state"`
			} `json:"logins"`
		}
		if err := st.Bridge.Provision(ctx, http.MethodGet, "/v3/whoami", u.ID.String(), u.Client.AccessToken, nil, &who); err != nil {
			return "", err
		}
		for _, l := range who.Logins {
			if l.ID == loginID {
				last = l.State.StateEvent + " " + l.State.Error + " " + l.State.Message
				if l.State.StateEvent == stateEvent {
					return l.State.Error, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%w: login %s never reached %s within %s; last state: %s", ErrTimeout, loginID, stateEvent, timeout, last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeDoublePuppetRegistration writes the registration mautrix bridges use for double
// puppeting: no URL, a non-exclusive namespace over every local user, and an as_token
// the bridge is given as its secret.
func writeDoublePuppetRegistration(dir string) (string, string, error) {
	token := randomHex(24)
	reg := fmt.Sprintf(`id: doublepuppet
url: null
as_token: %q
hs_token: %q
sender_localpart: %q
rate_limited: false
namespaces:
  users:
    - regex: '@.*:%s'
      exclusive: false
`, token, randomHex(24), "dp-"+randomHex(6), regexp.QuoteMeta(ServerName))
	path := filepath.Join(dir, "doublepuppet-registration.yaml")
	if err := os.WriteFile(path, []byte(reg), 0o600); err != nil {
		return "", "", fmt.Errorf("failed to write the double puppet registration: %w", err)
	}
	return path, token, nil
}

// proxyRegistration starts a proxy in front of the bridge's appservice listener and
// points the bridge's registration (as Synapse reads it) at the proxy.
func proxyRegistration(b *Bridge, wrap func(http.Handler) http.Handler) (*http.Server, error) {
	target, err := url.Parse(b.URL)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to listen for the transaction proxy: %w", err)
	}
	srv := &http.Server{Handler: wrap(httputil.NewSingleHostReverseProxy(target)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	data, err := os.ReadFile(b.RegistrationPath)
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	var reg map[string]any
	if err := yaml.Unmarshal(data, &reg); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("failed to read the registration: %w", err)
	}
	reg["url"] = "http://" + l.Addr().String()
	if data, err = yaml.Marshal(reg); err == nil {
		err = os.WriteFile(b.RegistrationPath, data, 0o600)
	}
	if err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("failed to point the registration at the proxy: %w", err)
	}
	return srv, nil
}
