package callbacks

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/database"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/socket"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/memstore"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

// session is one third-party client logging in to the simulator with a token.
type session struct {
	acc    *interop.Account
	events chan interop.Event
	done   chan struct{} // closed when Run returned, with its error in err
	err    error
	cancel context.CancelFunc
}

func login(t *testing.T, env *simtest.Env, network, number, token string) *session {
	t.Helper()
	account := jid.Interop(simtest.IntegratorID, number)
	user, err := strconv.ParseUint(number, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	product := waWa6.ClientPayload_INTEROP
	if network == "messenger" {
		product = waWa6.ClientPayload_INTEROP_MSGR
	}
	payload := &waWa6.ClientPayload{
		Username: &user, Device: proto.Uint32(0), Product: &product,
		InteropData: &waWa6.ClientPayload_InteropData{AccountID: proto.Uint64(simtest.IntegratorID), Token: []byte(token)},
	}
	stored, err := memstore.NewAccount(account)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{events: make(chan interop.Event, 100), done: make(chan struct{})}
	s.acc, err = interop.NewAccount(interop.AccountConfig{
		Client: interop.Config{
			Dial:      interop.SocketDialer(socket.DialOptions{URL: env.Sim.GatewayURL(network), RootKey: env.Sim.RootPublicKey(network), Payload: payload}),
			IQTimeout: 10 * time.Second,
			Backoff:   interop.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		},
		Store: memstore.New(stored),
		Log:   zerolog.Nop(),
		Handler: func(_ context.Context, evt interop.Event) {
			switch evt.(type) {
			case *interop.Connected, *interop.PreKeysUploaded, *interop.ConnectFailure:
				select {
				case s.events <- evt:
				default:
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.err = s.acc.Run(ctx)
		close(s.done)
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *session) stop() {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// waitFor waits for an event of type T.
func waitFor[T interop.Event](t *testing.T, s *session) T {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case evt := <-s.events:
			if e, ok := evt.(T); ok {
				return e
			}
		case <-s.done:
			t.Fatalf("the client stopped: %v", s.err)
		case <-deadline:
			var zero T
			t.Fatalf("no %T in time", zero)
		}
	}
}

// refused waits for Run to end with the gateway's 401.
func (s *session) refused(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
		if !errors.Is(s.err, errcode.ErrUnauthorized) {
			t.Fatalf("Run = %v, want the gateway's 401", s.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the gateway did not refuse the login")
	}
	for len(s.events) > 0 {
		if _, ok := (<-s.events).(*interop.Connected); ok {
			t.Fatal("connected with a refused token")
		}
	}
}

// TestSimulatorAuthenticatesThroughHandler runs real gateways whose integrator callback
// base is this handler: logins succeed only with a live token minted in the database,
// each network checks its own tokens, and an offline account's queued message comes
// back as a push for the right network.
func TestSimulatorAuthenticatesThroughHandler(t *testing.T) {
	ctx := context.Background()
	db := database.New(sqltest.SQLite(t), zerolog.Nop())
	if err := db.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	pusher := &recordingPusher{}
	h, err := New(Config{
		Networks: []Network{{Name: "whatsapp", IntegratorID: simtest.IntegratorID, Secret: waSecret},
			{Name: "messenger", IntegratorID: simtest.IntegratorID, Secret: msgrSecret}},
		Tokens: db, Pusher: pusher, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	p := simtest.NewProvider(t)
	cfg := simtest.Config(p)
	for name, secret := range map[string][]byte{"whatsapp": waSecret, "messenger": msgrSecret} {
		in := &cfg.Network(name).Integrators[0]
		in.CallbackBase, in.CallbackSecret = srv.URL, string(secret)
	}
	env := simtest.StartWith(t, p, cfg)

	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number).String()
	token, _, err := db.MintToken(ctx, "whatsapp", account, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("wrong token", func(t *testing.T) {
		login(t, env, "whatsapp", number, token+"x").refused(t)
	})
	t.Run("whatsapp token on messenger", func(t *testing.T) {
		login(t, env, "messenger", number, token).refused(t)
	})
	t.Run("messenger token", func(t *testing.T) {
		mtok, _, err := db.MintToken(ctx, "messenger", account, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		s := login(t, env, "messenger", number, mtok)
		waitFor[*interop.Connected](t, s)
		s.stop()
	})

	// A good login, keys uploaded, then offline: a message to it makes the gateway push.
	s := login(t, env, "whatsapp", number, token)
	if c := waitFor[*interop.Connected](t, s); !c.New {
		t.Fatal("a fresh account was not told to upload keys")
	}
	waitFor[*interop.PreKeysUploaded](t, s)
	s.stop()
	if p.BadSignatures() != 0 || len(p.Pushes()) != 0 {
		t.Fatal("the simulator called the fake provider instead of the handler")
	}

	var meta struct{ JID string }
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491709876543", "opt_in": []int{simtest.IntegratorID}}, &meta)
	env.MustCall(t, 200, "POST", "/v1/users/"+meta.JID+"/messages", map[string]any{"to": account, "kind": "text", "text": "hello"}, nil)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if got := pusher.take(); len(got) > 0 {
			if got[0].Network != "whatsapp" || got[0].Account.String() != account || got[0].Pending < 1 {
				t.Fatalf("push %+v", got[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no push for the offline account")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Revoking the login (a logout) shuts the old token out.
	if _, err := db.RevokeTokens(ctx, "whatsapp", account); err != nil {
		t.Fatal(err)
	}
	login(t, env, "whatsapp", number, token).refused(t)
}
