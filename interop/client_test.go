package interop

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

func TestHandshakeOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		first      []byte // raw first frame; nil = none (connect timeout)
		connected  *Connected
		failure    error // expected ConnectFailure.Err (by errors.Is)
		reason     string
		terminal   bool // Run returns instead of reconnecting
		retryAfter bool
	}{
		{
			name:      "success new",
			first:     []byte(`<success t="1700000000" new="1"/>`),
			connected: &Connected{New: true, ServerTime: time.Unix(1700000000, 0)},
		},
		{
			name:      "success known account",
			first:     []byte(`<success t="1700000001"/>`),
			connected: &Connected{ServerTime: time.Unix(1700000001, 0)},
		},
		{name: "failure 401", first: []byte(`<failure reason="401"/>`), failure: errcode.ErrUnauthorized, terminal: true},
		{name: "failure 403 region", first: []byte(`<failure code="403" reason="region"/>`), failure: errcode.ErrForbidden, reason: "region", terminal: true},
		{name: "failure 405", first: []byte(`<failure reason="405"/>`), failure: errcode.ErrProtocolSwitch, terminal: true},
		{name: "failure 503 retried", first: []byte(`<failure reason="503"/>`), failure: errcode.ErrUnavailable},
		{name: "message before success", first: []byte(`<message id="1" from="1@s.whatsapp.net"/>`)},
		{name: "malformed first frame", first: []byte(`<success t="1"`)},
		{name: "no answer", first: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fastConfig()
			cfg.ConnectTimeout = 100 * time.Millisecond
			tc := startClient(t, cfg)
			gw := tc.dialer.next()
			if tt.first != nil {
				gw.sendRaw(tt.first)
			}
			evt := tc.events.next(t)
			if tt.connected != nil {
				got, ok := evt.(*Connected)
				if !ok {
					t.Fatalf("got %T, want Connected", evt)
				}
				if got.New != tt.connected.New || !got.ServerTime.Equal(tt.connected.ServerTime) {
					t.Fatalf("got %+v, want %+v", got, tt.connected)
				}
				if !tc.IsConnected() {
					t.Fatal("IsConnected is false after Connected")
				}
				return
			}
			if tt.failure != nil {
				cf, ok := evt.(*ConnectFailure)
				if !ok {
					t.Fatalf("got %T, want ConnectFailure", evt)
				}
				if !errors.Is(cf.Err, tt.failure) {
					t.Fatalf("ConnectFailure.Err = %v, want %v", cf.Err, tt.failure)
				}
				var e *errcode.Error
				if !errors.As(cf.Err, &e) || e.Reason != tt.reason {
					t.Fatalf("reason of %v, want %q", cf.Err, tt.reason)
				}
				evt = tc.events.next(t)
			}
			disc, ok := evt.(*Disconnected)
			if !ok {
				t.Fatalf("got %T, want Disconnected", evt)
			}
			if disc.WillReconnect == tt.terminal {
				t.Fatalf("WillReconnect = %v for terminal=%v (err %v)", disc.WillReconnect, tt.terminal, disc.Err)
			}
			if tt.terminal {
				err := tc.result(t)
				if !errors.Is(err, tt.failure) {
					t.Fatalf("Run returned %v, want %v", err, tt.failure)
				}
				if n := tc.dialer.dialCount(); n != 1 {
					t.Fatalf("dialed %d times after a terminal failure", n)
				}
				return
			}
			// Retried: the client dials again and can log in.
			tc.connect(t)
		})
	}
}

func TestStreamErrors(t *testing.T) {
	tests := []struct {
		name      string
		frame     []byte
		final     Event // expected before Disconnected
		wantErr   error // Run's result for terminal ones
		immediate bool
	}{
		{name: "conflict", frame: []byte(`<stream:error><conflict type="replaced"/></stream:error>`), final: &Replaced{}, wantErr: ErrReplaced},
		{name: "logged out", frame: []byte(`<stream:error code="401"/>`), final: &LoggedOut{}, wantErr: ErrLoggedOut},
		{name: "515 reconnect now", frame: []byte(`<stream:error code="515"/>`), immediate: true},
		{name: "other stream error", frame: []byte(`<stream:error code="500"/>`)},
		{name: "malformed frame", frame: []byte(`<message id="1"><enc></message>`)},
		{name: "not xml", frame: []byte{0xff, 0xfe, 0x00}},
		{name: "too large", frame: []byte("<a>" + strings.Repeat("x", stanza.MaxFrameSize) + "</a>")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fastConfig()
			cfg.Backoff.Initial = 50 * time.Millisecond
			tc := startClient(t, cfg)
			gw := tc.connect(t)
			gw.sendRaw(tt.frame)
			if tt.final != nil {
				evt := tc.events.next(t)
				if got, want := typeName(evt), typeName(tt.final); got != want {
					t.Fatalf("got %s, want %s", got, want)
				}
			}
			disc := waitFor[*Disconnected](t, tc.events)
			gw.waitClosed()
			if tt.wantErr != nil {
				if disc.WillReconnect {
					t.Fatal("WillReconnect after a terminal stream error")
				}
				if err := tc.result(t); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Run returned %v, want %v", err, tt.wantErr)
				}
				time.Sleep(100 * time.Millisecond)
				if n := tc.dialer.dialCount(); n != 1 {
					t.Fatalf("dialed %d times; it must not fight for the account", n)
				}
				return
			}
			if !disc.WillReconnect {
				t.Fatalf("no reconnect after %v", disc.Err)
			}
			if tt.immediate != (disc.RetryIn == 0) {
				t.Fatalf("RetryIn = %s, immediate = %v", disc.RetryIn, tt.immediate)
			}
			if !tt.immediate && disc.RetryIn != 50*time.Millisecond {
				t.Fatalf("RetryIn = %s, want the reset backoff 50ms", disc.RetryIn)
			}
			tc.connect(t)
		})
	}
}

func typeName(e Event) string {
	switch e.(type) {
	case *Replaced:
		return "Replaced"
	case *LoggedOut:
		return "LoggedOut"
	case *Disconnected:
		return "Disconnected"
	case *ConnectFailure:
		return "ConnectFailure"
	case *Connected:
		return "Connected"
	}
	return "other"
}

func TestReconnectBackoff(t *testing.T) {
	cfg := fastConfig()
	cfg.Backoff = Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, Jitter: -1}
	d := newFakeDialer(t)
	d.failNext(errors.New("refused"), errors.New("refused"), errors.New("refused"), errors.New("refused"))
	l := newEventLog()
	cfg.Dial = d.dial
	cfg.Handler = l.handle
	tc := &testClient{Client: NewClient(cfg), dialer: d, events: l, done: make(chan error, 1)}
	ctx, cancel := contextWithCleanup(t)
	defer cancel()
	go func() { tc.done <- tc.Run(ctx) }()

	want := []time.Duration{10, 20, 40, 40}
	for i, w := range want {
		disc := waitFor[*Disconnected](t, l)
		if disc.RetryIn != w*time.Millisecond || !disc.WillReconnect {
			t.Fatalf("attempt %d: RetryIn %s WillReconnect %v, want %s", i, disc.RetryIn, disc.WillReconnect, w*time.Millisecond)
		}
	}
	gw := tc.connect(t)
	d.mu.Lock()
	for i := 1; i < len(d.dials); i++ {
		if gap := d.dials[i].Sub(d.dials[i-1]); gap < want[i-1]*time.Millisecond {
			t.Errorf("dial %d came %s after the previous one, want at least %s", i, gap, want[i-1]*time.Millisecond)
		}
	}
	d.mu.Unlock()

	// A drop after a healthy connection starts the backoff over.
	_ = gw.conn.Close()
	disc := waitFor[*Disconnected](t, l)
	if disc.RetryIn != 10*time.Millisecond {
		t.Fatalf("RetryIn after a healthy connection = %s, want 10ms", disc.RetryIn)
	}
	tc.connect(t)
	cancel()
	select {
	case err := <-tc.done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRunTwice(t *testing.T) {
	tc := startClient(t, fastConfig())
	tc.connect(t)
	ctx, cancel := contextWithCleanup(t)
	defer cancel()
	if err := tc.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Run: %v, want ErrAlreadyRunning", err)
	}
}

// A second 515 soon after the first waits for the backoff: a gateway stuck asking for
// reconnects is not hammered.
func TestRepeated515BacksOff(t *testing.T) {
	cfg := fastConfig()
	cfg.Backoff.Initial = 30 * time.Millisecond
	tc := startClient(t, cfg)
	for i, want := range []time.Duration{0, 30 * time.Millisecond} {
		gw := tc.connect(t)
		gw.sendRaw([]byte(`<stream:error code="515"/>`))
		disc := waitFor[*Disconnected](t, tc.events)
		if disc.RetryIn != want || !errors.Is(disc.Err, errcode.ErrReconnectNeeded) {
			t.Fatalf("515 #%d: RetryIn %s err %v, want %s", i+1, disc.RetryIn, disc.Err, want)
		}
	}
	tc.connect(t)
}
