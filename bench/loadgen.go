package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// loadgenEnv is the bridge and metasim with a FakeHomeserver in Synapse's place.
type loadgenEnv struct {
	*env
	hs     *FakeHomeserver
	dropDB func()
}

// startLoadgen starts the fake homeserver, metasim and the bridge in dir.
func startLoadgen(ctx context.Context, o Options, dir string) (le *loadgenEnv, err error) {
	le = &loadgenEnv{env: &env{mode: ModeLoadgen, o: o, log: o.Log.With().Str("mode", ModeLoadgen).Logger()}}
	defer func() {
		if err != nil {
			le.close()
		}
	}()
	le.hs, err = StartFakeHomeserver(FakeHomeserverOptions{
		ServerName: kit.ServerName, BotLocalpart: "metainteropbot", Log: le.log,
		OnSend: func(_ id.RoomID, sender id.UserID, content map[string]any, at time.Time) {
			if body, ok := content["body"].(string); ok {
				le.arrive(body, at)
			}
		},
	})
	if err != nil {
		return le, err
	}
	bo := kit.BridgeOptions{Binary: o.BridgeBinary, Dir: filepath.Join(dir, "bridge"), HomeserverURL: le.hs.URL, ServerName: kit.ServerName}
	if o.Postgres != "" {
		if bo.Database, le.dropDB, err = kit.FreshPostgres(ctx, o.Postgres); err != nil {
			return le, err
		}
	}
	le.bridge, err = kit.PrepareBridge(ctx, bo)
	if err != nil {
		return le, err
	}
	reg, err := readRegistration(le.bridge.RegistrationPath)
	if err != nil {
		return le, err
	}
	le.hs.botID = id.NewUserID(reg.SenderLocalpart, kit.ServerName)
	le.hs.SetAppservice(le.bridge.URL, reg.HSToken)
	le.sim, err = kit.StartMetasim(ctx, kit.MetasimOptions{CallbackBase: le.bridge.URL, Adjust: simAdjust})
	if err != nil {
		return le, err
	}
	values := o.bridgeConfig()
	if uri := o.sqliteURI(bo.Dir); uri != "" {
		values["database.uri"] = uri
	}
	for _, network := range []string{"whatsapp", "messenger"} {
		for k, v := range le.sim.NetworkConfig(network) {
			values[k] = v
		}
	}
	if err = le.bridge.EditConfig(values); err != nil {
		return le, err
	}
	if err = le.bridge.Start(ctx); err != nil {
		return le, err
	}
	return le, nil
}

func (le *loadgenEnv) close() {
	if le.bridge != nil {
		le.bridge.Stop()
	}
	if le.sim != nil {
		le.sim.Close()
	}
	if le.hs != nil {
		le.hs.Close()
	}
	if le.dropDB != nil {
		le.dropDB()
	}
}

// matrixUser is a Matrix user the fake homeserver vouches for: the provisioning API
// is authorized with the bridge's shared secret, as an integration manager's would be.
func (le *loadgenEnv) matrixUser(_ context.Context, p *pair) error {
	p.mxid = id.NewUserID(fmt.Sprintf("bench%d", p.idx), kit.ServerName)
	p.token = le.bridge.ProvisioningSecret
	return nil
}

// joinPortal tells the bridge the user joined the portal, as the homeserver would
// after the invite.
func (le *loadgenEnv) joinPortal(ctx context.Context, p *pair) error {
	return le.hs.PushTransaction(ctx, []map[string]any{le.hs.MemberEvent(p.room, p.mxid, "join")})
}

// sendToMeta is the Matrix→Meta send: one transaction holding the user's message.
func (le *loadgenEnv) sendToMeta(ctx context.Context, pair int, body string) error {
	p := le.pairs[pair]
	return le.hs.PushTransaction(ctx, []map[string]any{le.hs.MessageEvent(p.room, p.mxid, body)})
}

// RunLoadgen measures the bridge's own ceiling: both directions with the fake
// homeserver, then its memory at each of o.MemoryLogins connected logins on a fresh
// bridge.
func RunLoadgen(ctx context.Context, o Options, rep *Report) error {
	le, err := startLoadgen(ctx, o, filepath.Join(o.Dir, "loadgen"))
	if err != nil {
		return fmt.Errorf("failed to start the loadgen bridge: %w", err)
	}
	defer le.close()
	le.log.Info().Int("pairs", o.Pairs).Msg("Logging in and opening chats")
	if err := le.setupPairs(ctx, o.Pairs, le.matrixUser, le.joinPortal); err != nil {
		return fmt.Errorf("failed to set up the pairs (bridge log: %s): %w", le.bridge.LogPath, err)
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	le.watchInboxes(watchCtx)
	res, err := le.measure(ctx, le.sendToMeta)
	rep.Throughput = append(rep.Throughput, res...)
	if unknown := le.hs.Unknown(); len(unknown) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("loadgen: the fake homeserver answered unknown requests with {}: %v", unknown))
	}
	return err
}

// RunMemory reads a fresh loadgen bridge's resident memory with no login, then with
// each count of connected logins (no chats, no traffic).
func RunMemory(ctx context.Context, o Options, rep *Report) error {
	le, err := startLoadgen(ctx, o, filepath.Join(o.Dir, "memory"))
	if err != nil {
		return fmt.Errorf("failed to start the memory bridge: %w", err)
	}
	defer le.close()
	baseline, err := le.settledRSS(ctx, 3*time.Second)
	if err != nil {
		return err
	}
	logged := 0
	before := le.hs.Requests()
	defer func() {
		rep.Notes = append(rep.Notes, fmt.Sprintf("memory: the %d logins made %d requests to the homeserver, so the figures do not "+
			"depend on it being the fake one", logged, le.hs.Requests()-before))
	}()
	for _, target := range o.MemoryLogins {
		le.log.Info().Int("logins", target).Msg("Logging in for the memory reading")
		started := time.Now()
		sem := make(chan struct{}, 8)
		errs := make(chan error, target)
		for i := logged; i < target; i++ {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				mxid := id.NewUserID(fmt.Sprintf("mem%d", i), kit.ServerName)
				_, err := le.login(ctx, mxid, le.bridge.ProvisioningSecret, number(2, i))
				errs <- err
			}()
		}
		for i := logged; i < target; i++ {
			if err := <-errs; err != nil {
				return fmt.Errorf("login %d of %d failed: %w", i+1, target, err)
			}
		}
		logged = target
		le.log.Info().Int("logins", target).Dur("took", time.Since(started)).Msg("Logged in")
		rss, err := le.settledRSS(ctx, 5*time.Second)
		if err != nil {
			return err
		}
		m := MemoryResult{Mode: ModeLoadgen, Logins: target, RSSBytes: rss, BaselineBytes: baseline}
		if target > 0 {
			m.PerLoginBytes = (rss - baseline) / int64(target)
		}
		rep.Memory = append(rep.Memory, m)
	}
	return nil
}
