package control_test

import (
	"testing"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/control"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

type changeAnswer struct {
	Participants []simuser.GroupParticipant `json:"participants"`
}

// gp2 matches the third party's w:gp2 notification holding child.
func gp2(child string) func(simtest.Other) bool {
	return func(o simtest.Other) bool {
		_, has := o.Node.Child(child)
		return o.Kind == "notification" && o.Node.Attr("type") == "w:gp2" && has
	}
}

func TestGroups(t *testing.T) {
	env := simtest.Start(t)
	alice := createUser(t, env, "491701111111", 1).JID
	bob := createUser(t, env, "491702222222", 1).JID
	var outsider control.UserView // not opted in
	env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": "+491703333333"}, &outsider)
	tp := env.StartThirdParty(t, simtest.ThirdPartyOptions{Number: "491701234567", Store: memStore(t, "491701234567")})

	var g simuser.GroupInfo
	env.MustCall(t, 201, "POST", "/v1/groups", map[string]any{"actor": alice.String(), "subject": "Team",
		"participants": []string{bob.String(), tp.JID.String()}}, &g)
	if !g.JID.IsGroup() || g.Subject != "Team" || len(g.Participants) != 3 {
		t.Fatalf("created group = %+v", g)
	}
	gpath := "/v1/groups/" + g.JID.String()

	// A group message reaches the third party and the other member.
	env.MustCall(t, 200, "POST", "/v1/users/"+alice.String()+"/messages",
		map[string]any{"to": g.JID.String(), "kind": "text", "text": "hi all"}, nil)
	if r := tp.Next(t, waitLong); r.Info.Chat != g.JID || r.Message.GetConversation() != "hi all" || r.Info.Sender.ToUser() != alice {
		t.Fatalf("third party got %+v", r)
	}
	if it, _ := waitInbox(t, env, bob, 0, simuser.KindText); it.Chat != g.JID || it.Data.Text != "hi all" || it.Data.EncType != "skmsg" {
		t.Fatalf("bob got %+v", it)
	}

	var info simuser.GroupInfo
	env.MustCall(t, 200, "PUT", gpath+"/subject", map[string]any{"actor": bob.String(), "subject": "Renamed"}, &info)
	if info.Subject != "Renamed" {
		t.Fatalf("after subject change = %+v", info)
	}
	tp.NextOther(t, waitLong, gp2("subject"))
	env.MustCall(t, 200, "PUT", gpath+"/description", map[string]any{"actor": alice.String(), "description": "About us"}, &info)
	if info.Description != "About us" {
		t.Fatalf("after description change = %+v", info)
	}

	var ch changeAnswer
	env.MustCall(t, 200, "POST", gpath+"/participants", map[string]any{"actor": alice.String(), "action": "promote",
		"participants": []string{bob.String()}}, &ch)
	if len(ch.Participants) != 1 || ch.Participants[0].Error != 0 {
		t.Fatalf("promote = %+v", ch)
	}
	env.MustCall(t, 200, "POST", gpath+"/participants", map[string]any{"actor": alice.String(), "action": "add",
		"participants": []string{outsider.JID.String()}}, &ch)
	if len(ch.Participants) != 1 || ch.Participants[0].Error != 403 {
		t.Fatalf("adding a user who has not opted in = %+v, want a per-participant 403", ch)
	}
	env.MustCall(t, 200, "POST", gpath+"/participants", map[string]any{"actor": bob.String(), "action": "remove",
		"participants": []string{tp.JID.String()}}, &ch)
	tp.NextOther(t, waitLong, gp2("remove"))
	env.MustCall(t, 200, "POST", gpath+"/leave", map[string]any{"actor": bob.String()}, nil)

	var view control.GroupView
	env.MustCall(t, 200, "GET", gpath, nil, &view)
	if len(view.Members) != 1 || view.Members[0] != alice || view.Subject != "Renamed" {
		t.Fatalf("group after the changes = %+v", view)
	}
	var list struct{ Groups []control.GroupView }
	env.MustCall(t, 200, "GET", "/v1/groups?network=whatsapp", nil, &list)
	if len(list.Groups) != 1 || list.Groups[0].JID != g.JID {
		t.Fatalf("groups = %+v", list.Groups)
	}

	bad := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/v1/groups", map[string]any{"actor": alice.String(), "participants": []string{}}, 400},
		{"POST", "/v1/groups", map[string]any{"actor": "1-491701234567@interop", "subject": "x"}, 400},
		{"POST", "/v1/groups", map[string]any{"actor": alice.String(), "subject": "x", "participants": []string{"bad"}}, 400},
		{"POST", gpath + "/participants", map[string]any{"actor": alice.String(), "action": "explode", "participants": []string{bob.String()}}, 400},
		{"POST", gpath + "/participants", map[string]any{"actor": alice.String(), "action": "add"}, 400},
		{"POST", "/v1/groups/" + alice.String() + "/leave", map[string]any{"actor": alice.String()}, 400},
		{"PUT", gpath + "/subject", map[string]any{"actor": alice.String(), "subject": ""}, 400},
		{"PUT", gpath + "/description", map[string]any{"actor": alice.String()}, 400},
		{"POST", gpath + "/leave", map[string]any{"actor": jid.New("491709999999", jid.ServerGateway).String()}, 404},
	}
	for _, b := range bad {
		var e apiErr
		if code := env.Call(t, b.method, b.path, b.body, &e); code != b.want || e.Code != b.want {
			t.Errorf("%s %s %v = %d %+v, want %d", b.method, b.path, b.body, code, e, b.want)
		}
	}
}
