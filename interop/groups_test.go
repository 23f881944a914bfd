package interop

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

func participant(u jid.JID, attrs ...string) stanza.Node {
	n := stanza.Node{Tag: "participant", Attrs: stanza.Attrs{"jid": u.String()}}
	for i := 0; i+1 < len(attrs); i += 2 {
		n.Attrs[attrs[i]] = attrs[i+1]
	}
	return n
}

func gp2(actor jid.JID, change stanza.Node) stanza.Node {
	return stanza.Node{Tag: "notification", Attrs: stanza.Attrs{"type": "w:gp2", "from": groupJID.String(),
		"participant": actor.String(), "t": "1700000100", "id": "n1"}, Content: []stanza.Node{change}}
}

func TestParseGroupNotification(t *testing.T) {
	groupNode := stanza.Node{Tag: "group", Attrs: stanza.Attrs{"id": groupJID.User, "creator": aliceJID.String(),
		"subject": "Team", "s_t": "1700000000", "s_o": aliceJID.String(), "creation": "1700000000"},
		Content: []stanza.Node{participant(aliceJID, "type", "superadmin"), participant(bobJID)}}
	for _, tc := range []struct {
		name    string
		n       stanza.Node
		want    *GroupChange
		wantErr bool
	}{
		{"create", gp2(aliceJID, stanza.Node{Tag: "create", Content: []stanza.Node{groupNode}}), &GroupChange{
			Action: "create", Subject: "Team",
			Participants: []GroupParticipant{{JID: aliceJID, Role: "superadmin"}, {JID: bobJID}}}, false},
		{"add", gp2(aliceJID, stanza.Node{Tag: "add", Content: []stanza.Node{participant(carolJID)}}),
			&GroupChange{Action: "add", Participants: []GroupParticipant{{JID: carolJID}}}, false},
		{"remove of a device JID names the user", gp2(aliceJID, stanza.Node{Tag: "remove", Content: []stanza.Node{participant(bob1JID)}}),
			&GroupChange{Action: "remove", Participants: []GroupParticipant{{JID: bobJID}}}, false},
		{"subject", gp2(bobJID, stanza.Node{Tag: "subject", Content: "New name"}),
			&GroupChange{Action: "subject", Subject: "New name"}, false},
		{"description", gp2(bobJID, stanza.Node{Tag: "description", Attrs: stanza.Attrs{"id": "d1"},
			Content: []stanza.Node{{Tag: "body", Content: "About us"}}}), &GroupChange{Action: "description", Description: "About us"}, false},
		{"description cleared", gp2(bobJID, stanza.Node{Tag: "description", Attrs: stanza.Attrs{"id": "d2", "delete": "true"}}),
			&GroupChange{Action: "description"}, false},
		{"leave", gp2(carolJID, stanza.Node{Tag: "leave"}), &GroupChange{Action: "leave"}, false},
		{"add without participants", gp2(aliceJID, stanza.Node{Tag: "add"}), nil, true},
		{"participant that is a group", gp2(aliceJID, stanza.Node{Tag: "remove", Content: []stanza.Node{participant(groupJID)}}), nil, true},
		{"unknown change", gp2(aliceJID, stanza.Node{Tag: "ephemeral"}), nil, true},
		{"two changes", stanza.Node{Tag: "notification", Attrs: stanza.Attrs{"type": "w:gp2", "from": groupJID.String()},
			Content: []stanza.Node{{Tag: "leave"}, {Tag: "leave"}}}, nil, true},
		{"not from a group", stanza.Node{Tag: "notification", Attrs: stanza.Attrs{"type": "w:gp2", "from": aliceJID.String()},
			Content: []stanza.Node{{Tag: "leave"}}}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := ParseNotification(tc.n)
			if tc.wantErr {
				if !errors.Is(err, ErrMalformedGroup) {
					t.Fatalf("got %+v, %v; want ErrMalformedGroup", info, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gc, ok := info.(*GroupChange)
			if !ok {
				t.Fatalf("parsed as %T", info)
			}
			if gc.Group != groupJID || gc.Actor.ToUser() != jid.MustParse(tc.n.Attr("participant")).ToUser() || !gc.Time.Equal(time.Unix(1700000100, 0)) {
				t.Errorf("group %s actor %s time %s", gc.Group, gc.Actor, gc.Time)
			}
			if gc.Action != tc.want.Action || gc.Subject != tc.want.Subject || gc.Description != tc.want.Description ||
				!slices.Equal(gc.Participants, tc.want.Participants) {
				t.Errorf("got %+v, want %+v", gc, tc.want)
			}
		})
	}
}

func TestParseGroupNodeSplitsRefused(t *testing.T) {
	g := stanza.Node{Tag: "group", Attrs: stanza.Attrs{"id": groupJID.User, "subject": "Team", "creation": "1700000000"},
		Content: []stanza.Node{participant(aliceJID, "type", "superadmin"), participant(bobJID, "type", "admin"),
			{Tag: "description", Attrs: stanza.Attrs{"id": "d1"}, Content: []stanza.Node{{Tag: "body", Content: "About"}}},
			participant(carolJID, "error", "403")}}
	info, refused, err := ParseGroupNode(g)
	if err != nil {
		t.Fatal(err)
	}
	if info.JID != groupJID || info.Description != "About" || info.DescriptionID != "d1" || !info.CreatedAt.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("info %+v", info)
	}
	if !slices.Equal(info.Members(), []jid.JID{aliceJID, bobJID}) || !info.Participants[1].IsAdmin() {
		t.Errorf("members %+v", info.Participants)
	}
	if len(refused) != 1 || refused[0] != (GroupParticipant{JID: carolJID, Error: 403}) {
		t.Errorf("refused %+v", refused)
	}
	if _, _, err := ParseGroupNode(stanza.Node{Tag: "group"}); !errors.Is(err, ErrMalformedGroup) {
		t.Errorf("group without id: %v", err)
	}
}

// A w:gp2 removal reaches the handler, and the Account has started a new sender key:
// the next group message goes with a fresh distribution to the remaining members
// only, and the removed member cannot read it.
func TestGroupRemovalNotificationStartsNewSenderKey(t *testing.T) {
	gw := newTestGateway(t)
	alice := startNew(t, gw, aliceJID)
	bob := startNew(t, gw, bobJID)
	carol := startNew(t, gw, carolJID)
	members := []jid.JID{aliceJID, bobJID, carolJID}
	gw.mu.Lock()
	gw.groups[groupJID] = slices.Clone(members)
	gw.mu.Unlock()
	alice.sendGroup(t, members, "before")
	bob.receiveGroupText(t, aliceJID, "before")
	carol.receiveGroupText(t, aliceJID, "before")

	// Bob (an admin) removes carol; the gateway tells alice.
	members = []jid.JID{aliceJID, bobJID}
	gw.mu.Lock()
	gw.groups[groupJID] = slices.Clone(members)
	gw.mu.Unlock()
	gw.notify(aliceJID, gp2(bobJID, stanza.Node{Tag: "remove", Content: []stanza.Node{participant(carolJID)}}))
	note := waitEvent[*IncomingNotification](t, alice)
	if gc, ok := note.Info.(*GroupChange); !ok || gc.Action != "remove" || !slices.Equal(gc.Left(), []jid.JID{carolJID}) {
		t.Fatalf("handler got %+v (%v)", note.Info, note.Err)
	}

	alice.sendGroup(t, members, "after")
	after := lastSent(t, gw)
	if got := distributedTo(after); !slices.Equal(got, []jid.JID{bobJID}) {
		t.Fatalf("after the removal the key went to %v, want a new key for bob only", got)
	}
	bob.receiveGroupText(t, aliceJID, "after")
	select {
	case d := <-carol.delivered:
		t.Fatalf("removed member read %+v", d.m)
	case <-time.After(50 * time.Millisecond):
	}

	// Even handed the new skmsg (a gateway that kept routing to her), carol's device
	// holds only the old sender key and cannot read it.
	skmsg, ok := after.Child("enc")
	if !ok || skmsg.Attr("type") != "skmsg" {
		t.Fatalf("the message after the removal has no skmsg: %v", after.Children())
	}
	gw.notify(carolJID, stanza.Node{Tag: "message", Attrs: stanza.Attrs{"id": after.Attr("id"), "t": "1700000200",
		"type": "text", "from": groupJID.String(), "participant": aliceJID.String()}, Content: []stanza.Node{skmsg}})
	select {
	case d := <-carol.delivered:
		if d.m.Message != nil || d.m.Undecryptable == nil {
			t.Fatalf("the removed member decrypted the message after her removal: %+v", d.m)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the removed member's device did not report the message it could not read")
	}
}
