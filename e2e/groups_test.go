//go:build synapse

package e2e

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// A WhatsApp user creates a group with the Matrix user's interop account and two other
// WhatsApp users: the group becomes a portal named by its subject with a ghost per Meta
// member; a member's message arrives from their ghost, and the Matrix user's answer
// reaches every member's device.
func TestSynapseGroupBasics(t *testing.T) {
	e := startStack(t, false, nil)
	c := e.openChat("+491707770001", "+491707770002")
	bob, err := e.st.Sim.NewUser(e.ctx, "+491707770003", nil)
	e.must(err)
	carol, err := e.st.Sim.NewUser(e.ctx, "+491707770004", nil)
	e.must(err)

	var group struct {
		JID string `json:"jid"`
	}
	e.must(e.st.Sim.Call(e.ctx, "POST", "/v1/groups", map[string]any{
		"actor": c.peer.JID, "subject": "Hiking club", "participants": []string{c.account, bob.JID, carol.JID},
	}, &group))
	if group.JID == "" {
		t.Fatal("metasim made no group")
	}

	// The portal appears with the subject as its name; the kit's client joins it.
	nameEvt, err := e.alice.WaitEvent(e.ctx, 30*time.Second, "the group portal's name", func(evt *event.Event) bool {
		return evt.Type == event.StateRoomName && evt.Content.AsRoomName().Name == "Hiking club"
	})
	e.must(err)
	room := nameEvt.RoomID
	_, err = e.alice.WaitEvent(e.ctx, 30*time.Second, "own join in the group portal", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == e.alice.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	members, err := e.alice.JoinedMembers(e.ctx, room)
	e.must(err)
	ghosts := map[id.UserID]bool{}
	for _, m := range members {
		if m != e.alice.ID && m.Localpart() != "metainteropbot" {
			ghosts[m] = true
		}
	}
	if len(ghosts) != 3 {
		t.Fatalf("group portal members %v: want the Matrix user, the bot and 3 ghosts", members)
	}

	// Bob writes in the group.
	mark := e.alice.Mark()
	_, err = bob.SendText(e.ctx, group.JID, "who brings the map?")
	e.must(err)
	got, err := e.alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "bob's group message", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.EventMessage && evt.Content.AsMessage().Body == "who brings the map?"
	})
	e.must(err)
	if !ghosts[got.Sender] || got.Sender == c.ghost {
		t.Errorf("bob's message came from %s, not from bob's ghost (ghosts %v, peer %s)", got.Sender, ghosts, c.ghost)
	}

	// The Matrix user answers: every member's device gets it, in the group.
	_, err = e.alice.SendText(e.ctx, room, "I do")
	e.must(err)
	for _, peer := range []struct {
		name string
		user *kit.SimUser
	}{{"the creator", c.peer}, {"bob", bob}, {"carol", carol}} {
		item, err := peer.user.WaitInbox(e.ctx, 30*time.Second, "the Matrix user's answer in the group", url.Values{"kind": {"text"}, "chat": {group.JID}}, inboxText("I do"))
		if err != nil {
			t.Fatalf("%s: %v", peer.name, err)
		}
		if item["sender"] != c.account {
			t.Errorf("%s got the answer from %v, want %s", peer.name, item["sender"], c.account)
		}
	}
}
