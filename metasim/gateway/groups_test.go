package gateway

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

func groupIQ(typ string, to string, child stanza.Node) stanza.Node {
	return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": typ, "xmlns": "w:g2", "to": to}, Content: []stanza.Node{child}}
}

func participants(users ...jid.JID) []stanza.Node {
	out := make([]stanza.Node, 0, len(users))
	for _, u := range users {
		out = append(out, stanza.Node{Tag: "participant", Attrs: stanza.Attrs{"jid": u.String()}})
	}
	return out
}

// resultErrors maps each participant of a change result to its error ("" = ok).
func resultErrors(t *testing.T, parent stanza.Node) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range parent.ChildrenByTag("participant") {
		out[p.Attr("jid")] = p.Attr("error")
	}
	return out
}

func hasGroupChange(tag string) func(stanza.Node) bool {
	return func(n stanza.Node) bool {
		_, ok := n.Child(tag)
		return n.Tag == "notification" && n.Attr("type") == "w:gp2" && ok
	}
}

// TestSection6_Groups walks a group's life: create with a refused participant, the
// create notification, info, add/remove/promote/demote with per-participant errors,
// subject and description, leave, and the w:gp2 notifications every member gets.
func TestSection6_Groups(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Limits.MaxGroupSize = 4 })
	ctx := context.Background()
	m1, m1c := e.metaUser("491701111111", UserOptions{})
	m2, m2c := e.metaUser("491702222222", UserOptions{})
	m3, m3c := e.metaUser("491703333333", UserOptions{})
	out := jid.New("491704444444", jid.ServerGateway) // not opted in
	mustNoErr(t, e.g().CreateUser(ctx, out, UserOptions{}))
	a := e.account("491701234567")

	answer := a.iq(groupIQ("set", jid.ServerGroup, stanza.Node{Tag: "create", Attrs: stanza.Attrs{"subject": "Team", "key": "K1"},
		Content: participants(m1, m2, out, jid.New("491709999999", jid.ServerGateway))}))
	g, ok := answer.Child("group")
	if iqCode(t, answer) != 0 || !ok {
		t.Fatalf("create: %v", answer)
	}
	group := jid.New(g.Attr("id"), jid.ServerGroup)
	if g.Attr("creator") != a.jid.String() || g.Attr("subject") != "Team" || g.Attr("creation") == "" || g.Attr("s_t") == "" {
		t.Fatalf("group %v", g.Attrs)
	}
	wantErrs := map[string]string{a.jid.String(): "", m1.String(): "", m2.String(): "", out.String(): "403",
		"491709999999@s.whatsapp.net": "404"}
	if got := resultErrors(t, g); len(got) != len(wantErrs) {
		t.Fatalf("create participants %v, want %v", got, wantErrs)
	} else {
		for k, v := range wantErrs {
			if got[k] != v {
				t.Fatalf("participant %s error %q, want %q", k, got[k], v)
			}
		}
	}
	for _, c := range []*rawClient{m1c, m2c} {
		n := c.waitFor("create notification", isNotification("w:gp2"))
		if n.Attr("from") != group.String() || n.Attr("participant") != a.jid.String() {
			t.Fatalf("notification %v", n.Attrs)
		}
		if _, ok := n.Path("create", "group"); !ok {
			t.Fatalf("create notification body %v", n)
		}
		c.ack(n)
	}
	m3c.expectNone("notification to a non-member", isNotification("w:gp2"))

	// Info for members, 403 for others.
	info := m1c.iq(groupIQ("get", group.String(), stanza.Node{Tag: "query", Attrs: stanza.Attrs{"request": "interactive"}}))
	if gi, ok := info.Child("group"); !ok || len(gi.ChildrenByTag("participant")) != 3 {
		t.Fatalf("info %v", info)
	}
	if code := iqCode(t, m3c.iq(groupIQ("get", group.String(), stanza.Node{Tag: "query"}))); code != 403 {
		t.Fatalf("info for a non-member: %d", code)
	}
	// Only admins change membership.
	if code := iqCode(t, m1c.iq(groupIQ("set", group.String(), stanza.Node{Tag: "add", Content: participants(m3)}))); code != 403 {
		t.Fatalf("add by a non-admin: %d", code)
	}
	answer = a.iq(groupIQ("set", group.String(), stanza.Node{Tag: "promote", Content: participants(m1, m3)}))
	res, _ := answer.Child("promote")
	if errs := resultErrors(t, res); errs[m1.String()] != "" || errs[m3.String()] != "404" {
		t.Fatalf("promote results %v", errs)
	}
	n := m2c.waitFor("promote notification", hasGroupChange("promote"))
	if p, ok := n.Child("promote"); !ok || len(p.Children()) != 1 {
		t.Fatalf("promote notification %v", n)
	}
	// The new admin adds: m3 fits, out is refused, m2 is already there, then the group is full.
	answer = m1c.iq(groupIQ("set", group.String(), stanza.Node{Tag: "add", Content: participants(out, m2, m3)}))
	res, _ = answer.Child("add")
	if errs := resultErrors(t, res); errs[out.String()] != "403" || errs[m2.String()] != "409" || errs[m3.String()] != "" {
		t.Fatalf("add results %v", errs)
	}
	n = m3c.waitFor("add notification", hasGroupChange("add"))
	if n.Attr("participant") != m1.String() {
		t.Fatalf("add notification %v", n.Attrs)
	}
	extra, _ := e.metaUser("491705555555", UserOptions{})
	answer = a.iq(groupIQ("set", group.String(), stanza.Node{Tag: "add", Content: participants(extra)}))
	if res, _ := answer.Child("add"); resultErrors(t, res)[extra.String()] != "406" {
		t.Fatalf("add to a full group: %v", answer)
	}
	// Subject and description by any member.
	if code := iqCode(t, m2c.iq(groupIQ("set", group.String(), stanza.Node{Tag: "subject", Content: "New"}))); code != 0 {
		t.Fatalf("subject: %d", code)
	}
	n = a.waitFor("subject notification", hasGroupChange("subject"))
	if s, ok := n.Child("subject"); !ok || s.Text() != "New" || n.Attr("participant") != m2.String() {
		t.Fatalf("subject notification %v", n)
	}
	desc := stanza.Node{Tag: "description", Attrs: stanza.Attrs{"id": "D1"}, Content: []stanza.Node{{Tag: "body", Content: "About"}}}
	if code := iqCode(t, m3c.iq(groupIQ("set", group.String(), desc))); code != 0 {
		t.Fatalf("description: %d", code)
	}
	a.waitFor("description notification", hasGroupChange("description"))
	info = a.iq(groupIQ("get", group.String(), stanza.Node{Tag: "query"}))
	gi, _ := info.Child("group")
	if gi.Attr("subject") != "New" || gi.Attr("s_o") != m2.String() {
		t.Fatalf("info after changes %v", gi.Attrs)
	}
	if body, ok := gi.Path("description", "body"); !ok || body.Text() != "About" {
		t.Fatalf("description in info %v", gi)
	}
	// Remove (the removed member hears it too), demote, leave.
	answer = a.iq(groupIQ("set", group.String(), stanza.Node{Tag: "remove", Content: participants(m3)}))
	if res, _ := answer.Child("remove"); resultErrors(t, res)[m3.String()] != "" {
		t.Fatalf("remove: %v", answer)
	}
	m3c.waitFor("remove notification", hasGroupChange("remove"))
	if code := iqCode(t, m1c.iq(groupIQ("set", group.String(), stanza.Node{Tag: "demote", Content: participants(a.jid)}))); code != 0 {
		t.Fatalf("demote iq: %d", code)
	} else {
		// The creator stays superadmin.
		info = a.iq(groupIQ("get", group.String(), stanza.Node{Tag: "query"}))
		gi, _ = info.Child("group")
		for _, p := range gi.ChildrenByTag("participant") {
			if p.Attr("jid") == a.jid.String() && p.Attr("type") != "superadmin" {
				t.Fatalf("creator demoted: %v", p.Attrs)
			}
		}
	}
	if code := iqCode(t, m2c.iq(groupIQ("set", group.String(), stanza.Node{Tag: "leave"}))); code != 0 {
		t.Fatalf("leave: %d", code)
	}
	a.waitFor("leave notification", func(n stanza.Node) bool { _, ok := n.Child("leave"); return ok && n.Attr("participant") == m2.String() })
	if code := iqCode(t, m2c.iq(groupIQ("get", group.String(), stanza.Node{Tag: "query"}))); code != 403 {
		t.Fatalf("info after leaving: %d", code)
	}
	if code := iqCode(t, a.iq(groupIQ("get", "120363999999999999@g.us", stanza.Node{Tag: "query"}))); code != 404 {
		t.Fatalf("info of an unknown group: %d", code)
	}
	// The control API's view agrees.
	view, err := e.g().Group(ctx, group)
	mustNoErr(t, err)
	if !slices.Equal(view.Members, []jid.JID{a.jid, m1}) || !slices.Equal(view.Admins, []jid.JID{a.jid, m1}) || view.Subject != "New" {
		t.Fatalf("group view %+v", view)
	}
	if _, err := e.g().Group(ctx, jid.New("1", jid.ServerGroup)); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("unknown group: %v", err)
	}
}

// TestSection6_GroupMessages checks group fan-out: the skmsg to every member device
// except the sender's own, each device's pkmsg first when it has one, from=group and
// participant=sender; phash over member devices (409 when stale); non-members 403.
func TestSection6_GroupMessages(t *testing.T) {
	p := newPair(t)
	e := p.e
	m2, m2c := e.metaUser("491702222222", UserOptions{})
	answer := p.a.iq(groupIQ("set", jid.ServerGroup, stanza.Node{Tag: "create", Attrs: stanza.Attrs{"subject": "G"},
		Content: participants(p.m, m2)}))
	g, _ := answer.Child("group")
	group := jid.New(g.Attr("id"), jid.ServerGroup)
	members := []jid.JID{p.m0.jid, p.m1.jid, m2}

	// Only m1 (device 1) lacks the sender key.
	msg := msgNode("G1", group, "text", []jid.JID{p.m1.jid}, false)
	msg.Attrs["phash"] = signal.ParticipantHash(members)
	msg.Content = append(msg.Children(), stanza.Node{Tag: "enc", Attrs: stanza.Attrs{"v": "2", "type": "skmsg"}, Content: []byte("sk")})
	if ack := p.a.sendMessage(msg); ackError(ack) != "" {
		t.Fatalf("group message refused: %v", ack.Attrs)
	}
	for _, c := range []*rawClient{p.m0, p.m1, m2c} {
		got := c.waitFor("group message", isMessage("G1"))
		if got.Attr("from") != group.String() || got.Attr("participant") != p.a.jid.String() {
			t.Fatalf("%s got %v", c.jid, got.Attrs)
		}
		encs := got.ChildrenByTag("enc")
		wantTypes := []string{"skmsg"}
		if c == p.m1 {
			wantTypes = []string{"msg", "skmsg"}
		}
		if len(encs) != len(wantTypes) {
			t.Fatalf("%s got %d encs, want %v", c.jid, len(encs), wantTypes)
		}
		for i, enc := range encs {
			if enc.Attr("type") != wantTypes[i] {
				t.Fatalf("%s enc %d is %s, want %s", c.jid, i, enc.Attr("type"), wantTypes[i])
			}
		}
	}
	// A member's own devices are not in its phash and get nothing of its message.
	reply := msgNode("G2", group, "text", nil, false)
	reply.Attrs["phash"] = signal.ParticipantHash([]jid.JID{p.a.jid, m2})
	reply.Content = []stanza.Node{{Tag: "enc", Attrs: stanza.Attrs{"v": "2", "type": "skmsg"}, Content: []byte("sk2")}}
	if ack := p.m0.sendMessage(reply); ackError(ack) != "" {
		t.Fatalf("member reply refused: %v", ack.Attrs)
	}
	p.a.waitFor("reply", isMessage("G2"))
	p.m1.expectNone("own message", isMessage("G2"))
	// Stale phash.
	stale := msgNode("G3", group, "text", nil, false)
	stale.Attrs["phash"] = signal.ParticipantHash([]jid.JID{p.m0.jid, m2})
	stale.Content = []stanza.Node{{Tag: "enc", Attrs: stanza.Attrs{"v": "2", "type": "skmsg"}, Content: []byte("sk")}}
	if ack := p.a.sendMessage(stale); ackError(ack) != "409" {
		t.Fatalf("stale group phash: %v", ack.Attrs)
	}
	// A non-member may not write.
	_, oc := e.metaUser("491706666666", UserOptions{})
	stale.Attrs["id"] = "G4"
	if ack := oc.sendMessage(stale); ackError(ack) != "403" {
		t.Fatalf("non-member: %v", ack.Attrs)
	}
}
