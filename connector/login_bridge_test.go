package connector

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/bridgev2/status"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
)

// stubMatrix is the Matrix side for tests that never reach Matrix: only what a login
// touches is implemented, and bridge states are recorded. Anything else panics on the
// nil embedded interface, which is the point: the login must not talk to Matrix.
type stubMatrix struct {
	bridgev2.MatrixConnector
	states chan status.BridgeState
}

func (s *stubMatrix) Init(*bridgev2.Bridge)         {}
func (s *stubMatrix) BotIntent() bridgev2.MatrixAPI { return nil }
func (s *stubMatrix) ServerName() string            { return "test.invalid" }
func (s *stubMatrix) SendBridgeStatus(_ context.Context, st *status.BridgeState) error {
	s.states <- *st
	return nil
}

// testLogWriter sends logs to the test until it ends; the clients' goroutines may
// still log afterwards, which testing does not allow.
type testLogWriter struct {
	t    *testing.T
	lock sync.Mutex
	done bool
}

func newTestLogWriter(t *testing.T) *testLogWriter {
	w := &testLogWriter{t: t}
	t.Cleanup(func() {
		w.lock.Lock()
		w.done = true
		w.lock.Unlock()
	})
	return w
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.lock.Lock()
	defer w.lock.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func newTestBridge(t *testing.T, db *dbutil.Database, c *InteropConnector) (*bridgev2.Bridge, *stubMatrix) {
	t.Helper()
	mx := &stubMatrix{states: make(chan status.BridgeState, 16)}
	log := zerolog.New(newTestLogWriter(t)).Level(zerolog.InfoLevel)
	br := bridgev2.NewBridge("test", db, log, nil, mx, c, commands.NewProcessor)
	ctx := log.WithContext(context.Background())
	if err := br.DB.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	bgCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	br.BackgroundCtx = bgCtx
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return br, mx
}

// waitState skips bridge states until one of login with evt and code arrives.
func waitState(t *testing.T, mx *stubMatrix, login string, evt status.BridgeStateEvent, code status.BridgeStateErrorCode) status.BridgeState {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case st := <-mx.states:
			if string(st.RemoteID) == login && st.StateEvent == evt && st.Error == code {
				return st
			}
			t.Logf("skipping bridge state %s %s %q", st.StateEvent, st.Error, st.Message)
		case <-deadline:
			t.Fatalf("no bridge state %s %s for %s in time", evt, code, login)
		}
	}
}

// A login through bridgev2 itself: the input step, the saved row, loading it back
// from the database, and the honest state the client reports.
func TestLoginThroughBridge(t *testing.T) {
	sqltest.Run(t, func(t *testing.T, db *dbutil.Database) {
		c := newTestConnector(t, nil)
		br, mx := newTestBridge(t, db, c)
		ctx := context.Background()
		alice, err := br.GetUserByMXID(ctx, "@alice:test.invalid")
		if err != nil {
			t.Fatal(err)
		}
		proc, err := c.CreateLogin(ctx, alice, LoginFlowIDPhoneNumber)
		if err != nil {
			t.Fatal(err)
		}
		if _, err = c.CreateLogin(ctx, alice, "qr"); err == nil {
			t.Error("unknown flow accepted")
		}
		step, err := proc.Start(ctx)
		if err != nil || step.Type != bridgev2.LoginStepTypeUserInput {
			t.Fatalf("start: %+v, %v", step, err)
		}
		input := proc.(bridgev2.LoginProcessUserInput)
		step, err = input.SubmitUserInput(ctx, map[string]string{"network": "whatsapp", "phone_number": "+49 170 1234567"})
		if err != nil {
			t.Fatal(err)
		}
		if step.Type != bridgev2.LoginStepTypeComplete || step.CompleteParams.UserLoginID != "whatsapp:12-491701234567" {
			t.Fatalf("complete step %+v", step)
		}
		if step.Instructions != "Logged in as +49 170 1234567 on WhatsApp" {
			t.Errorf("instructions %q", step.Instructions)
		}

		// The client starts connecting; no gateway listens, so it says the connection
		// dropped and that it keeps trying.
		waitState(t, mx, "whatsapp:12-491701234567", status.StateTransientDisconnect, StateConnectionDropped)
		if !proc.(*PhoneLogin).Main.Bridge.GetCachedUserLoginByID("whatsapp:12-491701234567").Client.IsLoggedIn() {
			t.Error("a login whose run loop keeps reconnecting is not logged in")
		}
		// Its Signal identity was created by the login.
		if _, err := c.Store.GetAccount(ctx, jid.Interop(12, "491701234567")); err != nil {
			t.Errorf("no Signal account after login: %v", err)
		}

		// The row in bridgev2's table loads back into the same client.
		row, err := br.DB.UserLogin.GetByID(ctx, "whatsapp:12-491701234567")
		if err != nil || row == nil {
			t.Fatalf("saved login: %v, %v", row, err)
		}
		meta := row.Metadata.(*UserLoginMetadata)
		if meta.Network != ids.WhatsApp || meta.InteropJID != jid.Interop(12, "491701234567") || meta.Verification != Unverified ||
			row.RemoteName != "+49 170 1234567" || row.UserMXID != "@alice:test.invalid" {
			t.Errorf("saved login %+v %+v", row, meta)
		}
		loaded := &bridgev2.UserLogin{UserLogin: row}
		if err := c.LoadUserLogin(ctx, loaded); err != nil {
			t.Fatal(err)
		}

		// The same number cannot be claimed by another Matrix user.
		bob, err := br.GetUserByMXID(ctx, "@bob:test.invalid")
		if err != nil {
			t.Fatal(err)
		}
		proc, _ = c.CreateLogin(ctx, bob, LoginFlowIDPhoneNumber)
		if _, err = proc.Start(ctx); err != nil {
			t.Fatal(err)
		}
		_, err = proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(ctx, map[string]string{"network": "whatsapp", "phone_number": "+491701234567"})
		if !errors.Is(err, ErrLoginNumberTaken) || strings.Contains(err.Error(), "alice") {
			t.Errorf("a second Matrix user claiming the number: want ErrLoginNumberTaken without naming the owner, got %v", err)
		}

		// Logging in again with one's own number reuses the login.
		proc, _ = c.CreateLogin(ctx, alice, LoginFlowIDPhoneNumber)
		step, err = proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(ctx, map[string]string{"network": "whatsapp", "phone_number": "+491701234567"})
		if err != nil || step.CompleteParams.UserLoginID != "whatsapp:12-491701234567" {
			t.Fatalf("second login of the owner: %+v, %v", step, err)
		}
		if logins, err := br.DB.UserLogin.GetAllForUser(ctx, alice.MXID); err != nil || len(logins) != 1 {
			t.Errorf("logins after logging in twice: %d, %v", len(logins), err)
		}
	})
}

// Without a way to verify numbers, no login is created at all.
func TestLoginThroughBridgeRefusesUnverified(t *testing.T) {
	db := sqltest.SQLite(t)
	c := newTestConnector(t, func(cfg *config.NetworkConfig) {
		cfg.Identity = config.IdentityConfig{AdminAssignedNumbers: true}
	})
	br, _ := newTestBridge(t, db, c)
	ctx := context.Background()
	alice, err := br.GetUserByMXID(ctx, "@alice:test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	proc, _ := c.CreateLogin(ctx, alice, LoginFlowIDPhoneNumber)
	_, err = proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(ctx, map[string]string{"network": "whatsapp", "phone_number": "+491701234567"})
	if !errors.Is(err, ErrLoginUnverified) {
		t.Fatalf("want ErrLoginUnverified, got %v", err)
	}
	if logins, err := br.DB.UserLogin.GetAllForUser(ctx, alice.MXID); err != nil || len(logins) != 0 {
		t.Fatalf("logins after a refusal: %v, %v", logins, err)
	}
}

// A login submitted while the bridge is still starting (bridgev2 serves provisioning
// before the network connector has upgraded its tables) waits for the start instead
// of failing on missing tables.
func TestLoginWaitsForStart(t *testing.T) {
	db := sqltest.SQLite(t)
	c := newTestConnector(t, func(nc *config.NetworkConfig) { nc.Identity.AllowUnverifiedNumbers = true })
	log := zerolog.New(newTestLogWriter(t)).Level(zerolog.InfoLevel)
	br := bridgev2.NewBridge("test", db, log, nil, &stubMatrix{states: make(chan status.BridgeState, 16)}, c, commands.NewProcessor)
	ctx := log.WithContext(context.Background())
	if err := br.DB.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	bgCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	br.BackgroundCtx = bgCtx
	alice, err := br.GetUserByMXID(ctx, "@alice:test.invalid")
	if err != nil {
		t.Fatal(err)
	}
	proc, err := c.CreateLogin(ctx, alice, LoginFlowIDPhoneNumber)
	if err != nil {
		t.Fatal(err)
	}
	early, stop := context.WithTimeout(ctx, 100*time.Millisecond)
	defer stop()
	input := map[string]string{"network": "whatsapp", "phone_number": "+491701234567"}
	if _, err := proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(early, input); err == nil || !strings.Contains(err.Error(), "still starting") {
		t.Fatalf("login before the start: %v, want a 'still starting' error", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(ctx, input)
		done <- err
	}()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("login after the start: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting login never went on")
	}
}
