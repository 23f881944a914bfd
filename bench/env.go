package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

// Options say what to measure.
type Options struct {
	RepoRoot     string
	BridgeBinary string
	// Dir holds the bridges' and Synapse's files.
	Dir string
	// Pairs is how many Matrix users each chat with their own simulated Meta user.
	Pairs int
	// Messages is how many messages each user sends in each direction.
	Messages int
	// Window is how many of one user's messages may be in flight at once.
	Window int
	// MemoryLogins are the login counts at which to read the bridge's memory.
	MemoryLogins []int
	// Stall ends a phase when nothing arrived for this long.
	Stall time.Duration
	// BridgeLogLevel is the bridge's logging.min_level.
	BridgeLogLevel string
	// BridgeDebug turns on the bridge's debug endpoints (pprof under
	// /_matrix/provision/debug), for profiling a run.
	BridgeDebug bool
	// BridgeConfig are extra dotted keys for the bridge's config, to compare settings.
	BridgeConfig map[string]any
	// SQLiteParams, when set, replace the query parameters of the bridge's SQLite
	// URI (the kit's are "_txlock=immediate").
	SQLiteParams string
	// Postgres, when set, is a PostgreSQL server DSN: each bridge gets a fresh
	// database there instead of SQLite.
	Postgres string
	// ProfileDir, when set, receives a CPU profile of the bridge for the first
	// ProfileSeconds of each measured phase (needs BridgeDebug).
	ProfileDir     string
	ProfileSeconds int
	// Keep saves Synapse's log next to the bridge's before the stack stops.
	Keep bool
	Log  zerolog.Logger
}

// pair is one Matrix user logged in to the bridge with a portal to one simulated
// Meta user.
type pair struct {
	idx     int
	mxid    id.UserID
	token   string    // provisioning authorization: the user's token or the secret
	user    *kit.User // stack mode only
	number  string
	loginID string
	account string // the Matrix user's interop JID
	peer    *kit.SimUser
	room    id.RoomID
}

// env is a running bridge and simulator with pairs, in one mode.
type env struct {
	mode   string
	hsPID  int // the homeserver's process, when it is one (Synapse)
	o      Options
	bridge *kit.Bridge
	sim    *kit.Metasim
	pairs  []*pair
	cur    atomic.Pointer[tracker]
	log    zerolog.Logger
}

// simAdjust raises the gateway's limits so that they do not cap the benchmark.
func simAdjust(c *metasim.Config) {
	for _, name := range metasim.Networks() {
		n := c.Network(name)
		n.Limits.PushInterval = metasim.Duration(100 * time.Millisecond)
		n.Limits.BurstMessages = 10_000_000
		n.Limits.HourlyMessages = 10_000_000
		n.Limits.NewConversations = 10_000_000
		n.Limits.QueueMax = 10_000_000
	}
}

// bridgeConfig are the bench's settings for the bridge on top of the kit's.
func (o Options) bridgeConfig() map[string]any {
	out := map[string]any{"logging.min_level": o.BridgeLogLevel, "provisioning.debug_endpoints": o.BridgeDebug}
	for k, v := range o.BridgeConfig {
		out[k] = v
	}
	return out
}

// sqliteURI is the bridge's database URI for its folder dir with o.SQLiteParams, or
// "" to keep the kit's.
func (o Options) sqliteURI(bridgeDir string) string {
	if o.SQLiteParams == "" || o.Postgres != "" {
		return ""
	}
	return "file:" + filepath.Join(bridgeDir, "bridge.db") + "?" + o.SQLiteParams
}

// number is a phone number for the i-th account of a kind (0 logins, 1 peers, 2
// memory logins).
func number(kind, i int) string { return fmt.Sprintf("+4917%d%07d", kind, i) }

// interopJID is how the Matrix user's account appears on the Meta side.
func interopJID(number string) string {
	return fmt.Sprintf("%d-%s@interop", kit.IntegratorID, number[1:])
}

// login logs mxid in with number through the provisioning API and waits until it is
// connected.
func (e *env) login(ctx context.Context, mxid id.UserID, token, number string) (string, error) {
	var start kit.LoginStep
	if err := e.bridge.Provision(ctx, http.MethodPost, "/v3/login/start/phone-number", mxid.String(), token, map[string]any{}, &start); err != nil {
		return "", fmt.Errorf("failed to start the login: %w", err)
	}
	var done kit.LoginStep
	path := fmt.Sprintf("/v3/login/step/%s/%s/user_input", url.PathEscape(start.LoginID), url.PathEscape(start.StepID))
	if err := e.bridge.Provision(ctx, http.MethodPost, path, mxid.String(), token,
		map[string]string{"network": "whatsapp", "phone_number": number}, &done); err != nil {
		return "", fmt.Errorf("failed to submit the number: %w", err)
	}
	if done.Complete == nil {
		return "", fmt.Errorf("the login did not complete: step %s", done.StepID)
	}
	return done.Complete.UserLoginID, e.waitConnected(ctx, mxid, token, done.Complete.UserLoginID, 60*time.Second)
}

// waitConnected polls the provisioning API's whoami until the login is CONNECTED.
func (e *env) waitConnected(ctx context.Context, mxid id.UserID, token, loginID string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var who struct {
			Logins []struct {
				ID    string `json:"id"`
				State struct {
					StateEvent string `json:"state_event"`
				} `json:"state"`
			} `json:"logins"`
		}
		if err := e.bridge.Provision(ctx, http.MethodGet, "/v3/whoami", mxid.String(), token, nil, &who); err != nil {
			return err
		}
		for _, l := range who.Logins {
			if l.ID == loginID && l.State.StateEvent == "CONNECTED" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("login %s did not connect within %s", loginID, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startChat asks the bridge for a DM with the pair's peer.
func (e *env) startChat(ctx context.Context, p *pair) error {
	var resp struct {
		RoomID id.RoomID `json:"dm_room_mxid"`
	}
	path := "/v3/create_dm/" + url.PathEscape(p.peer.Number) + "?login_id=" + url.QueryEscape(p.loginID)
	if err := e.bridge.Provision(ctx, http.MethodPost, path, p.mxid.String(), p.token, map[string]any{}, &resp); err != nil {
		return fmt.Errorf("failed to start a chat with %s: %w", p.peer.Number, err)
	}
	if resp.RoomID == "" {
		return errors.New("the bridge answered create_dm without a room")
	}
	p.room = resp.RoomID
	return nil
}

// setupPairs makes the pairs, a few at a time; mk makes the Matrix user's part.
// waitOwnJoin waits until the pair's Matrix user joined its portal.
func waitOwnJoin(ctx context.Context, p *pair) error {
	_, err := p.user.WaitEvent(ctx, 60*time.Second, "own join in the portal", func(evt *event.Event) bool {
		return evt.RoomID == p.room && evt.Type == event.StateMember && evt.GetStateKey() == p.mxid.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	return err
}

func (e *env) setupPairs(ctx context.Context, n int, mk func(ctx context.Context, p *pair) error, after func(ctx context.Context, p *pair) error) error {
	e.pairs = make([]*pair, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, 4)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				return
			}
			if errs[i] = e.setupPair(ctx, i, mk, after); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (e *env) setupPair(ctx context.Context, i int, mk func(ctx context.Context, p *pair) error, after func(ctx context.Context, p *pair) error) error {
	p := &pair{idx: i, number: number(0, i)}
	p.account = interopJID(p.number)
	if err := mk(ctx, p); err != nil {
		return fmt.Errorf("pair %d: %w", i, err)
	}
	var err error
	if p.loginID, err = e.login(ctx, p.mxid, p.token, p.number); err != nil {
		return fmt.Errorf("pair %d: %w", i, err)
	}
	if p.peer, err = e.sim.NewUser(ctx, number(1, i), nil); err != nil {
		return fmt.Errorf("pair %d: %w", i, err)
	}
	if p.peer.Number == "" {
		p.peer.Number = number(1, i)
	}
	if err := e.startChat(ctx, p); err != nil {
		return fmt.Errorf("pair %d: %w", i, err)
	}
	if after != nil {
		if err := after(ctx, p); err != nil {
			return fmt.Errorf("pair %d: %w", i, err)
		}
	}
	e.pairs[i] = p
	return nil
}

// arrive hands an arrival to the current phase's tracker.
func (e *env) arrive(body string, at time.Time) {
	if t := e.cur.Load(); t != nil {
		t.arrive(body, at)
	}
}

// watchInboxes long-polls every peer's inbox for texts until ctx ends; an item's
// arrival time is when the simulated device received it.
func (e *env) watchInboxes(ctx context.Context) {
	for _, p := range e.pairs {
		go func() {
			var since int64
			q := url.Values{"kind": {"text"}}
			for ctx.Err() == nil {
				items, next, err := p.peer.Inbox(ctx, since, 10*time.Second, q)
				if err != nil {
					if ctx.Err() == nil {
						e.log.Warn().Err(err).Int("pair", p.idx).Msg("Inbox poll failed")
						time.Sleep(200 * time.Millisecond)
					}
					continue
				}
				now := time.Now()
				for _, item := range items {
					data, _ := item["data"].(map[string]any)
					text, _ := data["text"].(string)
					at := now
					if s, ok := item["received_at"].(string); ok {
						if t, err := time.Parse(time.RFC3339Nano, s); err == nil && !t.After(now) {
							at = t
						}
					}
					e.arrive(text, at)
				}
				since = next
			}
		}()
	}
}

// sendToMatrix is the Meta→Matrix send: the peer writes to the Matrix user.
func (e *env) sendToMatrix(ctx context.Context, pair int, body string) error {
	p := e.pairs[pair]
	_, err := p.peer.SendText(ctx, p.account, body)
	return err
}

// measure runs one warm-up message per pair each way (session set-up is not what
// is measured), then both directions.
func (e *env) measure(ctx context.Context, toMeta func(ctx context.Context, pair int, body string) error) ([]DirectionResult, error) {
	pid := e.bridge.PID()
	phases := []phase{
		{dir: MatrixToMeta, send: toMeta},
		{dir: MetaToMatrix, send: e.sendToMatrix},
	}
	for i := range phases {
		phases[i].pairs, phases[i].window, phases[i].stall, phases[i].pid = len(e.pairs), e.o.Window, e.o.Stall, pid
		phases[i].hsPID = e.hsPID
	}
	for _, ph := range phases {
		warm := ph
		warm.dir, warm.count = "warm-"+ph.dir, 1
		t := newTracker(warm.pairs, warm.window)
		e.cur.Store(t)
		if _, err := warm.run(ctx, t, e.mode); err != nil {
			return nil, fmt.Errorf("warm-up %s: %w", ph.dir, err)
		}
	}
	var out []DirectionResult
	var errs []error
	for _, ph := range phases {
		ph.count = e.o.Messages
		t := newTracker(ph.pairs, ph.window)
		e.cur.Store(t)
		e.log.Info().Str("mode", e.mode).Str("direction", ph.dir).Int("pairs", ph.pairs).Int("messages_each", ph.count).Msg("Measuring")
		profiled := e.profile(ctx, e.mode+"-"+ph.dir)
		res, err := ph.run(ctx, t, e.mode)
		<-profiled
		out = append(out, res)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", e.mode, ph.dir, err))
		}
		e.log.Info().Float64("msgs_per_sec", res.PerSec).Float64("p50_ms", res.Latency.P50ms).Float64("p99_ms", res.Latency.P99ms).
			Float64("cpu_ms_per_msg", res.CPUPerMs).Msg("Measured")
	}
	e.cur.Store(nil)
	return out, errors.Join(errs...)
}

// settledRSS reads the bridge's RSS after letting it settle.
func (e *env) settledRSS(ctx context.Context, settle time.Duration) (int64, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(settle):
	}
	s, err := ReadProc(e.bridge.PID())
	return s.RSSBytes, err
}

// registration is what the bench needs from the bridge's appservice registration.
type registration struct {
	HSToken         string `yaml:"hs_token"`
	SenderLocalpart string `yaml:"sender_localpart"`
}

func readRegistration(path string) (registration, error) {
	var reg registration
	data, err := os.ReadFile(path)
	if err != nil {
		return reg, fmt.Errorf("failed to read the registration: %w", err)
	}
	if err := yaml.Unmarshal(data, &reg); err != nil {
		return reg, fmt.Errorf("failed to parse the registration: %w", err)
	}
	return reg, nil
}

// profile fetches a CPU profile of the bridge into o.ProfileDir in the background;
// the channel closes when it is written (at once when profiling is off).
func (e *env) profile(ctx context.Context, name string) <-chan struct{} {
	done := make(chan struct{})
	if e.o.ProfileDir == "" || !e.o.BridgeDebug {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		secs := max(e.o.ProfileSeconds, 1)
		path := filepath.Join(e.o.ProfileDir, name+".pprof")
		if err := fetchProfile(ctx, e.bridge, secs, path); err != nil {
			e.log.Warn().Err(err).Msg("Failed to profile the bridge")
			return
		}
		e.log.Info().Str("path", path).Msg("Wrote a CPU profile of the bridge")
	}()
	return done
}

// fetchProfile reads secs seconds of the bridge's CPU profile from its debug API.
func fetchProfile(ctx context.Context, b *kit.Bridge, secs int, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", b.URL, secs), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.ProvisioningSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("failed to fetch the profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the debug API answered HTTP %d", resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("failed to save the profile: %w", err)
	}
	return f.Close()
}
