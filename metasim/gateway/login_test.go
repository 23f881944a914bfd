package gateway

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waWa6"
)

// TestSection2_Login checks the payload checks and the auth callback: <success> for a
// good login, <failure reason="CODE" [detail]/> and a closed connection otherwise.
func TestSection2_Login(t *testing.T) {
	tests := []struct {
		name       string
		requireEEA bool
		number     string
		edit       func(*waWa6.ClientPayload)
		down       bool
		wantCode   string // "" = success
		wantDetail string
	}{
		{name: "success", number: "491701234567"},
		{name: "wrong product", number: "491701234567", wantCode: "405",
			edit: func(p *waWa6.ClientPayload) { p.Product = waWa6.ClientPayload_INTEROP_MSGR.Enum() }},
		{name: "unknown integrator", number: "491701234567", wantCode: "403",
			edit: func(p *waWa6.ClientPayload) { p.InteropData.AccountID = proto.Uint64(77) }},
		{name: "no interop data", number: "491701234567", wantCode: "403",
			edit: func(p *waWa6.ClientPayload) { p.InteropData = nil }},
		{name: "companion device", number: "491701234567", wantCode: "403",
			edit: func(p *waWa6.ClientPayload) { p.Device = proto.Uint32(2) }},
		{name: "bad token", number: "491701234567", wantCode: "401",
			edit: func(p *waWa6.ClientPayload) { p.InteropData.Token = []byte("wrong") }},
		{name: "empty token", number: "491701234567", wantCode: "401",
			edit: func(p *waWa6.ClientPayload) { p.InteropData.Token = nil }},
		{name: "provider down", number: "491701234567", down: true, wantCode: "503"},
		{name: "region refused", requireEEA: true, number: "14155550100", wantCode: "403", wantDetail: "region"},
		{name: "region allowed in the EEA", requireEEA: true, number: "33612345678"},
		{name: "region check off", number: "14155550100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.RequireEEA = tt.requireEEA })
			e.prov.setDown(tt.down)
			p := e.payload(tt.number)
			if tt.edit != nil {
				tt.edit(p)
			}
			c, first := e.dialRaw(p)
			if tt.wantCode == "" {
				if first.Tag != "success" || first.Attr("new") != "1" || first.Attr("t") == "" {
					t.Fatalf("got %s %v, want <success t new=1>", first.Tag, first.Attrs)
				}
				if n := c.expectOffline(); n != 0 {
					t.Fatalf("offline count %d", n)
				}
				return
			}
			if first.Tag != "failure" || first.Attr("reason") != tt.wantCode || first.Attr("detail") != tt.wantDetail {
				t.Fatalf("got %s %v, want <failure reason=%s detail=%q>", first.Tag, first.Attrs, tt.wantCode, tt.wantDetail)
			}
			c.expectClosed()
		})
	}
}

// TestSection2_NewFlag checks that new="1" is sent only until the account uploaded keys.
func TestSection2_NewFlag(t *testing.T) {
	e := newEnv(t)
	c := e.connect("491701234567")
	c.uploadKeys(3)
	c.close()
	c2, first := e.dialRaw(e.payload("491701234567"))
	if first.Tag != "success" || first.HasAttr("new") {
		t.Fatalf("second login: %s %v, want <success> without new", first.Tag, first.Attrs)
	}
	c2.expectOffline()
	if n := e.prov.badSigCount(); n != 0 {
		t.Fatalf("provider saw %d badly signed callbacks", n)
	}
}

// TestSection1_Replacement checks that a second connection for an account replaces
// the first, which gets <stream:error><conflict type="replaced"/></stream:error>.
func TestSection1_Replacement(t *testing.T) {
	for _, kind := range []string{"third-party account", "meta device"} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t)
			var first, second *rawClient
			var endpoint jid.JID
			if kind == "meta device" {
				endpoint, first = e.metaUser("491709999999", UserOptions{})
				second = e.connectDevice(endpoint)
			} else {
				first = e.connect("491701234567")
				endpoint = first.jid
				second = e.connect("491701234567")
			}
			se := first.waitFor("stream error", isTag("stream:error"))
			conflict, ok := se.Child("conflict")
			if !ok || conflict.Attr("type") != "replaced" {
				t.Fatalf("stream error %v without <conflict type=replaced>", se)
			}
			first.expectClosed()
			// The new connection works and is the endpoint's only one.
			if code := iqCode(t, second.iq(pingIQ())); code != 0 {
				t.Fatalf("ping on the new connection: %d", code)
			}
			if got := e.g().ConnectedEndpoints(); len(got) != 1 || got[0] != endpoint {
				t.Fatalf("connected endpoints %v", got)
			}
		})
	}
}

// TestSection2_TokenExpiry checks that a connection whose token expires is asked to
// reconnect (stream:error 515), so the token is checked again.
func TestSection2_TokenExpiry(t *testing.T) {
	e := newEnv(t)
	e.prov.setExpires(e.clk.Now().Add(time.Second))
	c := e.connect("491701234567")
	se := c.waitFor("stream error", isTag("stream:error"))
	if se.Attr("code") != "515" {
		t.Fatalf("stream error %v, want code 515", se.Attrs)
	}
	c.expectClosed()
	// An expired token is refused outright.
	e.prov.setExpires(e.clk.Now().Add(-time.Minute))
	_, first := e.dialRaw(e.payload("491701234567"))
	if first.Tag != "failure" || first.Attr("reason") != "401" {
		t.Fatalf("expired token: %s %v", first.Tag, first.Attrs)
	}
}

// TestSection2_ConnectDevice checks the in-process endpoint: only directory devices,
// <success new> until keys are uploaded.
func TestSection2_ConnectDevice(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	u := jid.New("491701111111", jid.ServerGateway)
	if _, err := e.g().ConnectDevice(ctx, u); err == nil {
		t.Fatal("connected a device of an unknown user")
	}
	mustNoErr(t, e.g().CreateUser(ctx, u, UserOptions{}))
	if _, err := e.g().ConnectDevice(ctx, u.WithDevice(3)); err == nil {
		t.Fatal("connected an unregistered device")
	}
	if _, err := e.g().ConnectDevice(ctx, jid.New("491701111111", jid.ServerMessenger)); err == nil {
		t.Fatal("connected a device of another network")
	}
	fc, err := e.g().ConnectDevice(ctx, u)
	mustNoErr(t, err)
	c := newRawClient(t, fc)
	c.jid = u
	if first := c.next(); first.Tag != "success" || first.Attr("new") != "1" {
		t.Fatalf("first stanza %s %v", first.Tag, first.Attrs)
	}
	c.expectOffline()
	c.uploadKeys(2)
	c.close()
	c2, err := e.g().ConnectDevice(ctx, u)
	mustNoErr(t, err)
	rc := newRawClient(t, c2)
	if first := rc.next(); first.Tag != "success" || first.HasAttr("new") {
		t.Fatalf("reconnect: %s %v", first.Tag, first.Attrs)
	}
}

func pingIQ() stanza.Node {
	return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "w:p"}, Content: []stanza.Node{{Tag: "ping"}}}
}
