package interop

import (
	"errors"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

func TestPingOnSchedule(t *testing.T) {
	cfg := fastConfig()
	cfg.PingInterval = 40 * time.Millisecond
	tc := startClient(t, cfg)
	gw := tc.connect(t)
	start := time.Now()
	for i := 1; i <= 3; i++ {
		ping := gw.recv()
		if ping.Tag != "iq" || ping.Attr("type") != "get" || ping.Attr("xmlns") != "w:p" ||
			ping.Attr("to") != "s.whatsapp.net" || ping.Attr("id") == "" {
			t.Fatalf("ping %d is %v %v", i, ping, ping.Attrs)
		}
		if _, ok := ping.Child("ping"); !ok || len(ping.Children()) != 1 {
			t.Fatalf("ping %d lacks <ping/>", i)
		}
		if elapsed := time.Since(start); elapsed < time.Duration(i)*40*time.Millisecond-5*time.Millisecond {
			t.Fatalf("ping %d after %s, too early", i, elapsed)
		}
		gw.send(stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"id": ping.Attr("id"), "type": "result", "from": "s.whatsapp.net"}})
	}
	if gw.isClosed() {
		t.Fatal("answered pings dropped the connection")
	}
}

func TestMissingPongDrops(t *testing.T) {
	cfg := fastConfig()
	cfg.PingInterval = 30 * time.Millisecond
	cfg.IQTimeout = 60 * time.Millisecond
	tc := startClient(t, cfg)
	gw := tc.connect(t)
	gw.recv() // the ping, unanswered
	start := time.Now()
	gw.waitClosed()
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Fatalf("dropped %s after the ping, before IQTimeout", elapsed)
	}
	disc := waitFor[*Disconnected](t, tc.events)
	if !errors.Is(disc.Err, ErrIQTimeout) || !disc.WillReconnect {
		t.Fatalf("Disconnected %+v, want ErrIQTimeout and a reconnect", disc)
	}
	tc.connect(t)
}

// The socket stays open but nothing arrives; pings are off so only the idle watchdog
// can notice.
func TestSilentConnectionDetected(t *testing.T) {
	cfg := fastConfig()
	cfg.IdleTimeout = 150 * time.Millisecond
	tc := startClient(t, cfg)
	gw := tc.connect(t)

	// Frames keep it alive past the timeout...
	for range 4 {
		time.Sleep(30 * time.Millisecond)
		gw.send(stanza.Node{Tag: "chatstate", Attrs: stanza.Attrs{"from": "1@s.whatsapp.net"}, Content: []stanza.Node{{Tag: "paused"}}})
	}
	if gw.isClosed() {
		t.Fatal("connection with traffic dropped as idle")
	}
	// ...silence drops it, although the fake connection never closes by itself.
	start := time.Now()
	gw.waitClosed()
	if elapsed := time.Since(start); elapsed < 120*time.Millisecond || elapsed > time.Second {
		t.Fatalf("idle drop after %s, want about 150ms", elapsed)
	}
	disc := waitFor[*Disconnected](t, tc.events)
	if !errors.Is(disc.Err, ErrIdleTimeout) || !disc.WillReconnect {
		t.Fatalf("Disconnected %+v, want ErrIdleTimeout and a reconnect", disc)
	}
	tc.connect(t)
}
