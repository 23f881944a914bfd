package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// RunStack measures both directions through the real Synapse, metasim and the
// bridge process.
func RunStack(ctx context.Context, o Options, rep *Report) error {
	dir := filepath.Join(o.Dir, "stack")
	log := o.Log.With().Str("mode", ModeStack).Logger()
	log.Info().Msg("Starting Synapse, metasim and the bridge")
	cfg := o.bridgeConfig()
	// StartStack keeps the bridge's files in dir/bridge.
	if uri := o.sqliteURI(filepath.Join(dir, "bridge")); uri != "" {
		cfg["database.uri"] = uri
	}
	st, err := kit.StartStack(ctx, kit.StackOptions{RepoRoot: o.RepoRoot, BridgeBinary: o.BridgeBinary, Dir: dir,
		Metasim: simAdjust, BridgeConfig: cfg, Postgres: o.Postgres})
	if err != nil {
		return fmt.Errorf("failed to start the stack: %w", err)
	}
	defer st.Close()
	if o.Keep {
		defer func() {
			if data, err := os.ReadFile(st.Synapse.LogPath); err == nil {
				_ = os.WriteFile(filepath.Join(dir, "synapse.log"), data, 0o600)
			}
		}()
	}
	e := &env{mode: ModeStack, o: o, bridge: st.Bridge, sim: st.Sim, log: log, hsPID: st.Synapse.PID()}
	var users []*kit.User
	defer func() {
		for _, u := range users {
			u.Close()
		}
	}()
	userCh := make(chan *kit.User, o.Pairs)
	mk := func(ctx context.Context, p *pair) error {
		u, err := st.Synapse.NewUser(ctx, fmt.Sprintf("bench%d", p.idx), false)
		if err != nil {
			return err
		}
		userCh <- u
		p.user, p.mxid, p.token = u, u.ID, u.Client.AccessToken
		return nil
	}
	log.Info().Int("pairs", o.Pairs).Msg("Registering Matrix users, logging in and opening chats")
	err = e.setupPairs(ctx, o.Pairs, mk, waitOwnJoin)
	close(userCh)
	for u := range userCh {
		users = append(users, u)
	}
	if err != nil {
		return fmt.Errorf("failed to set up the pairs (bridge log: %s): %w", st.Bridge.LogPath, err)
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	e.watchInboxes(watchCtx)
	for _, p := range e.pairs {
		go watchMatrix(watchCtx, e, p)
	}
	// What the processes use with nothing to bridge, to set against the phases.
	idle, err := measureIdle(ctx, ModeStack, st.Bridge.PID(), st.Synapse.PID(), 5*time.Second)
	if err != nil {
		return err
	}
	rep.Idle = append(rep.Idle, idle)
	res, err := e.measure(ctx, func(ctx context.Context, pair int, body string) error {
		p := e.pairs[pair]
		_, err := p.user.SendText(ctx, p.room, body)
		return err
	})
	rep.Throughput = append(rep.Throughput, res...)
	return err
}

// watchMatrix hands every message the Matrix user receives in the portal from
// someone else (the peer's ghost) to the current phase, timed when the user's sync
// delivered it.
func watchMatrix(ctx context.Context, e *env, p *pair) {
	mark := 0
	for {
		evts, next, changed := p.user.EventsAfter(mark)
		now := time.Now()
		for _, evt := range evts {
			if evt.Type != event.EventMessage || evt.RoomID != p.room || evt.Sender == p.mxid {
				continue
			}
			e.arrive(evt.Content.AsMessage().Body, now)
		}
		mark = next
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// measureIdle reads the bridge's and the homeserver's CPU over a quiet period.
func measureIdle(ctx context.Context, mode string, bridgePID, hsPID int, d time.Duration) (IdleResult, error) {
	res := IdleResult{Mode: mode, Seconds: d.Seconds()}
	b0, err := ReadProc(bridgePID)
	if err != nil {
		return res, err
	}
	h0, err := ReadProc(hsPID)
	if err != nil {
		return res, err
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(d):
	}
	b1, err := ReadProc(bridgePID)
	if err != nil {
		return res, err
	}
	h1, err := ReadProc(hsPID)
	if err != nil {
		return res, err
	}
	res.BridgeCores = round((b1.CPU-b0.CPU).Seconds()/b1.At.Sub(b0.At).Seconds(), 3)
	res.HomeserverCores = round((h1.CPU-h0.CPU).Seconds()/h1.At.Sub(h0.At).Seconds(), 3)
	return res, nil
}
