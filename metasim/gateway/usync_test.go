package gateway

import (
	"context"
	"slices"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

func devicesIQ(users ...jid.JID) stanza.Node {
	list := make([]stanza.Node, 0, len(users))
	for _, u := range users {
		list = append(list, stanza.Node{Tag: "user", Attrs: stanza.Attrs{"jid": u.String()}})
	}
	return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "usync"}, Content: []stanza.Node{{Tag: "usync",
		Attrs: stanza.Attrs{"mode": "query", "context": "message"}, Content: []stanza.Node{
			{Tag: "query", Content: []stanza.Node{{Tag: "devices", Attrs: stanza.Attrs{"version": "2"}}}},
			{Tag: "list", Content: list}}}}}
}

// deviceIDs returns the device ids listed for user, and false when the answer has no
// device list for it.
func deviceIDs(t *testing.T, answer stanza.Node, user jid.JID) ([]string, bool) {
	t.Helper()
	list, ok := answer.Path("usync", "list")
	if !ok {
		t.Fatalf("usync answer %v", answer)
	}
	for _, u := range list.ChildrenByTag("user") {
		if u.Attr("jid") != user.String() {
			continue
		}
		dl, ok := u.Path("devices", "device-list")
		if !ok {
			return nil, false
		}
		var ids []string
		for _, d := range dl.ChildrenByTag("device") {
			ids = append(ids, d.Attr("id"))
		}
		return ids, true
	}
	t.Fatalf("usync answer lacks %s: %v", user, answer)
	return nil, false
}

// TestSection5_Usync checks device lists (only devices that uploaded keys; nothing for
// unknown users or users not opted in) and contact lookups (in only when the number
// is a Meta user opted in to this integrator, never saying which way it is out).
func TestSection5_Usync(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	m, _ := e.metaUser("491701111111", UserOptions{})
	d1, err := e.g().AddDevice(ctx, m)
	mustNoErr(t, err)
	_, err = e.g().AddDevice(ctx, m) // never uploads keys
	mustNoErr(t, err)
	e.connectDevice(d1).uploadKeys(1)
	stranger := jid.New("491703333333", jid.ServerGateway)
	mustNoErr(t, e.g().CreateUser(ctx, stranger, UserOptions{}))
	e.connectDevice(stranger).uploadKeys(1)
	other, _ := e.metaUser("491704444444", UserOptions{})
	mustNoErr(t, e.g().SetOptIn(ctx, other, integratorID, false))
	mustNoErr(t, e.g().SetOptIn(ctx, other, 2, true))
	a := e.account("491701234567")

	unknown := jid.New("491709999999", jid.ServerGateway)
	answer := a.iq(devicesIQ(m, stranger, unknown, other, a.jid))
	if ids, ok := deviceIDs(t, answer, m); !ok || !slices.Equal(ids, []string{"0", "1"}) {
		t.Fatalf("devices of %s: %v %v, want [0 1]", m, ids, ok)
	}
	for _, u := range []jid.JID{stranger, unknown, other} {
		if ids, ok := deviceIDs(t, answer, u); ok {
			t.Fatalf("devices of %s handed out: %v", u, ids)
		}
	}
	if ids, ok := deviceIDs(t, answer, a.jid); !ok || !slices.Equal(ids, []string{"0"}) {
		t.Fatalf("own devices %v", ids)
	}

	contactIQ := func(numbers ...string) stanza.Node {
		list := make([]stanza.Node, 0, len(numbers))
		for _, n := range numbers {
			list = append(list, stanza.Node{Tag: "user", Content: []stanza.Node{{Tag: "contact", Content: n}}})
		}
		return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": "get", "xmlns": "usync"}, Content: []stanza.Node{{Tag: "usync",
			Attrs: stanza.Attrs{"mode": "query", "context": "interactive"}, Content: []stanza.Node{
				{Tag: "query", Content: []stanza.Node{{Tag: "contact"}}}, {Tag: "list", Content: list}}}}}
	}
	answer = a.iq(contactIQ("+491701111111", "+491703333333", "+491709999999", "+491704444444", "garbage"))
	list, _ := answer.Path("usync", "list")
	users := list.ChildrenByTag("user")
	want := []struct{ typ, jid string }{{"in", m.String()}, {"out", ""}, {"out", ""}, {"out", ""}, {"out", ""}}
	if len(users) != len(want) {
		t.Fatalf("contact answer %v", answer)
	}
	for i, u := range users {
		c, _ := u.Child("contact")
		if c.Attr("type") != want[i].typ || u.Attr("jid") != want[i].jid {
			t.Errorf("contact %d: type %q jid %q, want %q %q", i, c.Attr("type"), u.Attr("jid"), want[i].typ, want[i].jid)
		}
		if want[i].typ == "out" && len(u.Attrs) != 0 {
			t.Errorf("contact %d: out answer carries %v", i, u.Attrs)
		}
	}
}

// TestSection5_DeviceNotifications checks <notification type="devices"> to the users a
// user talked with: add when a new device uploads its keys (joining the device list),
// remove when it is unlinked; the removed device's connection is closed.
func TestSection5_DeviceNotifications(t *testing.T) {
	p := newPair(t)
	ctx := context.Background()
	// a and m talked, so a hears about m's devices; a bystander does not.
	p.a.sendMessage(textTo("T1", p.m, p.mDevices()...))
	bystander := p.e.account("491707777777")

	d2, err := p.e.g().AddDevice(ctx, p.m)
	mustNoErr(t, err)
	dc := p.e.connectDevice(d2)
	p.a.expectNone("devices notification before keys", isNotification("devices"))
	dc.uploadKeys(2)
	n := p.a.waitFor("devices add", isNotification("devices"))
	info, err := interop.ParseNotification(n)
	dcInfo, ok := info.(*interop.DevicesChanged)
	if err != nil || !ok || dcInfo.User != p.m || !slices.Equal(dcInfo.Added, []jid.JID{d2}) {
		t.Fatalf("devices notification %v: %+v %v", n, info, err)
	}
	p.a.ack(n)

	mustNoErr(t, p.e.g().RemoveDevice(ctx, d2))
	se := dc.waitFor("stream error", isTag("stream:error"))
	if se.Attr("code") != "401" {
		t.Fatalf("removed device got %v", se.Attrs)
	}
	dc.expectClosed()
	n = p.a.waitFor("devices remove", isNotification("devices"))
	info, _ = interop.ParseNotification(n)
	if dcInfo, ok := info.(*interop.DevicesChanged); !ok || !slices.Equal(dcInfo.Removed, []jid.JID{d2}) {
		t.Fatalf("remove notification %+v", info)
	}
	bystander.expectNone("notification about a stranger", isNotification("devices"))
	if err := p.e.g().RemoveDevice(ctx, p.m); err == nil {
		t.Fatal("device 0 was removed")
	}
}

// TestSection5_IdentityChange checks that a device uploading a different identity
// makes the gateway tell the users its user talked with (<identity/>), and drops the
// one-time prekeys of the old identity.
func TestSection5_IdentityChange(t *testing.T) {
	p := newPair(t)
	p.m0.sendMessage(textTo("T1", p.a.jid, p.a.jid))
	// The same identity again is no change.
	p.m0.uploadKeys(2)
	p.a.expectNone("identity notification", isNotification("encrypt"))
	// A reinstalled device: new keys, new identity.
	p.m0.keys = nil
	p.m0.uploadKeys(1)
	n := p.a.waitFor("identity notification", isNotification("encrypt"))
	info, err := interop.ParseNotification(n)
	if ic, ok := info.(*interop.IdentityChanged); err != nil || !ok || ic.User != p.m || n.Attr("from") != p.m.String() {
		t.Fatalf("identity notification %v: %+v %v", n.Attrs, info, err)
	}
	if count := preKeyCount(t, p.m0); count != 1 {
		t.Fatalf("prekeys after the identity change: %d, want only the new one", count)
	}
}
