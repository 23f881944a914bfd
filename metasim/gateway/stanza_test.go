package gateway

import (
	"bytes"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// TestSection3_ProtocolErrors checks that a malformed frame gets
// <stream:error code="400"/> and one over 1 MiB <stream:error code="413"/>, and that
// the connection is closed after either.
func TestSection3_ProtocolErrors(t *testing.T) {
	tests := []struct {
		name     string
		frame    []byte
		viaPipe  bool // frames over the limit cannot pass socket.Conn's own check
		wantCode string
	}{
		{"not xml", []byte("hello"), false, "400"},
		{"unclosed element", []byte("<iq id='1'"), false, "400"},
		{"doctype", []byte(`<!DOCTYPE x><iq/>`), false, "400"},
		{"two elements", []byte(`<iq/><iq/>`), false, "400"},
		{"mixed content", []byte(`<iq>text<ping/></iq>`), false, "400"},
		{"over 1 MiB", append(append([]byte("<iq>"), bytes.Repeat([]byte("a"), stanza.MaxFrameSize)...), "</iq>"...), true, "413"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var c *rawClient
			if tt.viaPipe {
				_, c = e.metaUser("491701111111", UserOptions{})
			} else {
				c = e.connect("491701234567")
			}
			c.sendRaw(tt.frame)
			se := c.waitFor("stream error", isTag("stream:error"))
			if se.Attr("code") != tt.wantCode {
				t.Fatalf("stream error %v, want code %s", se.Attrs, tt.wantCode)
			}
			c.expectClosed()
		})
	}
}

// TestSection3_1_IQs checks ping, unknown elements and attributes (ignored), unknown
// namespaces (404) and malformed requests (400), and that the connection survives
// all of them.
func TestSection3_1_IQs(t *testing.T) {
	e := newEnv(t)
	c := e.connect("491701234567")
	c.send(stanza.Node{Tag: "presence", Attrs: stanza.Attrs{"type": "available"}})
	tests := []struct {
		name string
		iq   stanza.Node
		want int
	}{
		{"ping", pingIQ(), 0},
		{"ping with unknown attribute and child", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "w:p",
			"x-future": "1"}, Content: []stanza.Node{{Tag: "ping", Attrs: stanza.Attrs{"extra": "y"}}}}, 0},
		{"unknown namespace", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "w:future"}}, 404},
		{"bad type", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "put", "xmlns": "w:p"}}, 400},
		{"empty encrypt", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "encrypt"}}, 400},
		{"usync without list", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "usync"},
			Content: []stanza.Node{{Tag: "usync", Content: []stanza.Node{{Tag: "query"}}}}}, 400},
		{"group iq to a user", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "w:g2",
			"to": "491701111111@s.whatsapp.net"}, Content: []stanza.Node{{Tag: "query"}}}, 400},
		{"blocklist without item", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "blocklist"}}, 400},
		{"spam without list", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "spam"}}, 400},
		{"media_conn as get", stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "w:m"},
			Content: []stanza.Node{{Tag: "media_conn"}}}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := c.iq(tt.iq)
			if got := iqCode(t, answer); got != tt.want {
				t.Fatalf("code %d, want %d (%v)", got, tt.want, answer)
			}
			if answer.Attr("from") == "" {
				t.Fatal("answer without from")
			}
		})
	}
}

// TestSection3_1_IdleClose checks that a connection silent for the idle timeout is
// closed, while one that pings stays.
func TestSection3_1_IdleClose(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.IdleTimeout = 400 * time.Millisecond })
	silent := e.connect("491701234567")
	talker := e.connect("491707654321")
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if code := iqCode(t, talker.iq(pingIQ())); code != 0 {
			t.Fatalf("ping: %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	silent.expectClosed()
	if !e.g().IsConnected(talker.jid) {
		t.Fatal("a pinging connection was closed")
	}
	if e.g().IsConnected(silent.jid) {
		t.Fatal("the silent connection is still listed")
	}
}

// TestSection7_MediaConn checks media_conn answered from Config.MediaConn, and 503
// when the simulator has no media hosts.
func TestSection7_MediaConn(t *testing.T) {
	mediaIQ := stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "set", "xmlns": "w:m"}, Content: []stanza.Node{{Tag: "media_conn"}}}
	e := newEnv(t)
	c := e.connect("491701234567")
	answer := c.iq(mediaIQ)
	mc, ok := answer.Child("media_conn")
	if iqCode(t, answer) != 0 || !ok || mc.Attr("auth") != "media-auth" || mc.Attr("ttl") != "3600" {
		t.Fatalf("media_conn answer %v", answer)
	}
	if hosts := mc.ChildrenByTag("host"); len(hosts) != 1 || hosts[0].Attr("hostname") != "mmg.test:8443" {
		t.Fatalf("hosts %v", hosts)
	}
	e2 := newEnv(t, func(c *Config) { c.MediaConn = nil })
	c2 := e2.connect("491701234567")
	if code := iqCode(t, c2.iq(mediaIQ)); code != 503 {
		t.Fatalf("without media hosts: %d, want 503", code)
	}
}

// TestSection3_6_ChatState checks that chatstates reach live endpoints only, with
// from, and are never queued.
func TestSection3_6_ChatState(t *testing.T) {
	e := newEnv(t)
	m, mc := e.metaUser("491701111111", UserOptions{})
	a := e.account("491701234567")
	a.send(stanza.Node{Tag: "chatstate", Attrs: stanza.Attrs{"to": m.String()}, Content: []stanza.Node{{Tag: "composing",
		Attrs: stanza.Attrs{"media": "audio"}}}})
	cs := mc.waitFor("chatstate", isTag("chatstate"))
	if cs.Attr("from") != a.jid.String() {
		t.Fatalf("chatstate from %q", cs.Attr("from"))
	}
	if st := cs.Children(); len(st) != 1 || st[0].Tag != "composing" || st[0].Attr("media") != "audio" {
		t.Fatalf("chatstate content %v", cs.Children())
	}
	mc.close()
	mc.expectClosed()
	waitDisconnected(t, e, m)
	a.send(stanza.Node{Tag: "chatstate", Attrs: stanza.Attrs{"to": m.String()}, Content: []stanza.Node{{Tag: "paused"}}})
	// A ping answered means the chatstate before it was handled.
	a.iq(pingIQ())
	if depth, err := e.g().QueueDepth(t.Context(), m); err != nil || depth != 0 {
		t.Fatalf("queue depth %d (%v), want 0: chatstates are never stored", depth, err)
	}
	mc2 := e.connectDevice(m)
	mc2.expectNone("chatstate", isTag("chatstate"))
}

func waitDisconnected(t *testing.T, e *env, endpoint jid.JID) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for e.g().IsConnected(endpoint) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still connected", endpoint)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
