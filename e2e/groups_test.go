//go:build synapse

package e2e

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"strings"
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

	groupJID, room := c.openGroup(c.peer, "Hiking club", bob, carol)
	// The ghosts join one after the other.
	ghosts := map[id.UserID]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(ghosts) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("group portal ghosts %v: want 3, one per Meta member", ghosts)
		}
		time.Sleep(200 * time.Millisecond)
		members, err := e.alice.JoinedMembers(e.ctx, room)
		e.must(err)
		clear(ghosts)
		for _, m := range members {
			if m != e.alice.ID && m.Localpart() != "metainteropbot" {
				ghosts[m] = true
			}
		}
	}
	for _, u := range []string{c.peer.JID, bob.JID, carol.JID} {
		if !ghosts[ghostOf(u)] {
			t.Errorf("no ghost for %s among %v", u, ghosts)
		}
	}

	// Bob writes in the group.
	mark := e.alice.Mark()
	_, err = bob.SendText(e.ctx, groupJID, "who brings the map?")
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
		item, err := peer.user.WaitInbox(e.ctx, 30*time.Second, "the Matrix user's answer in the group", url.Values{"kind": {"text"}, "chat": {groupJID}}, inboxText("I do"))
		if err != nil {
			t.Fatalf("%s: %v", peer.name, err)
		}
		if item["sender"] != c.account {
			t.Errorf("%s got the answer from %v, want %s", peer.name, item["sender"], c.account)
		}
	}
}

// ghostOf is the Matrix ID of a simulated user's ghost.
func ghostOf(jid string) id.UserID {
	return id.NewUserID("metainterop_"+id.EncodeUserLocalpart(jid), kit.ServerName)
}

// openGroup has creator make a group with the chat's Matrix user and members, and
// waits for the Matrix user to join its portal.
func (c *chat) openGroup(creator *kit.SimUser, subject string, members ...*kit.SimUser) (string, id.RoomID) {
	c.t.Helper()
	participants := []string{c.account}
	for _, m := range members {
		participants = append(participants, m.JID)
	}
	var group struct {
		JID string `json:"jid"`
	}
	c.must(c.st.Sim.Call(c.ctx, "POST", "/v1/groups", map[string]any{
		"actor": creator.JID, "subject": subject, "participants": participants}, &group))
	nameEvt, err := c.alice.WaitEvent(c.ctx, 30*time.Second, "the group portal's name", func(evt *event.Event) bool {
		return evt.Type == event.StateRoomName && evt.Content.AsRoomName().Name == subject
	})
	c.must(err)
	_, err = c.alice.WaitEvent(c.ctx, 30*time.Second, "own join in the group portal", func(evt *event.Event) bool {
		return evt.RoomID == nameEvt.RoomID && evt.Type == event.StateMember && evt.GetStateKey() == c.alice.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	c.must(err)
	return group.JID, nameEvt.RoomID
}

// Every change a Meta member makes to the group shows in the portal as the matching
// Matrix state change by that member's ghost; after a removal and a leave, the Matrix
// user's messages reach the remaining members' devices (both of bob's) and not those
// who left.
func TestSynapseGroupChangesFromMeta(t *testing.T) {
	e := startStack(t, false, nil)
	c := e.openChat("+491707771001", "+491707771002")
	creator := c.peer
	bob, err := e.st.Sim.NewUser(e.ctx, "+491707771003", map[string]any{"devices": 2})
	e.must(err)
	carol, err := e.st.Sim.NewUser(e.ctx, "+491707771004", nil)
	e.must(err)
	dave, err := e.st.Sim.NewUser(e.ctx, "+491707771005", nil)
	e.must(err)
	group, room := c.openGroup(creator, "Choir", bob, carol)
	path := "/v1/groups/" + url.PathEscape(group)

	state := func(what string, match func(*event.Event) bool) *event.Event {
		t.Helper()
		evt, err := e.alice.WaitEvent(e.ctx, 30*time.Second, what, func(evt *event.Event) bool {
			return evt.RoomID == room && match(evt)
		})
		e.must(err)
		return evt
	}
	membership := func(who *kit.SimUser, m event.Membership) func(*event.Event) bool {
		return func(evt *event.Event) bool {
			return evt.Type == event.StateMember && evt.GetStateKey() == ghostOf(who.JID).String() && evt.Content.AsMember().Membership == m
		}
	}
	change := func(method, sub string, body map[string]any) {
		t.Helper()
		e.must(e.st.Sim.Call(e.ctx, method, path+sub, body, nil))
	}

	change("POST", "/participants", map[string]any{"actor": creator.JID, "action": "add", "participants": []string{dave.JID}})
	state("dave's join", membership(dave, event.MembershipJoin))

	change("POST", "/participants", map[string]any{"actor": creator.JID, "action": "promote", "participants": []string{bob.JID}})
	state("bob's promotion", func(evt *event.Event) bool {
		return evt.Type == event.StatePowerLevels && evt.Content.AsPowerLevels().GetUserLevel(ghostOf(bob.JID)) == 50
	})

	change("PUT", "/subject", map[string]any{"actor": bob.JID, "subject": "Choir 2027"})
	if evt := state("the new name", func(evt *event.Event) bool {
		return evt.Type == event.StateRoomName && evt.Content.AsRoomName().Name == "Choir 2027"
	}); evt.Sender != ghostOf(bob.JID) {
		t.Errorf("the name was changed by %s, want bob's ghost", evt.Sender)
	}

	change("PUT", "/description", map[string]any{"actor": carol.JID, "description": "Tuesdays 7 pm"})
	if evt := state("the new topic", func(evt *event.Event) bool {
		return evt.Type == event.StateTopic && evt.Content.AsTopic().Topic == "Tuesdays 7 pm"
	}); evt.Sender != ghostOf(carol.JID) {
		t.Errorf("the topic was changed by %s, want carol's ghost", evt.Sender)
	}

	change("POST", "/participants", map[string]any{"actor": creator.JID, "action": "remove", "participants": []string{carol.JID}})
	if evt := state("carol's removal", membership(carol, event.MembershipLeave)); evt.Sender != ghostOf(creator.JID) {
		t.Errorf("carol was removed by %s, want the creator's ghost", evt.Sender)
	}
	change("POST", "/leave", map[string]any{"actor": dave.JID})
	state("dave's leave", membership(dave, event.MembershipLeave))

	change("POST", "/participants", map[string]any{"actor": creator.JID, "action": "demote", "participants": []string{bob.JID}})
	state("bob's demotion", func(evt *event.Event) bool {
		return evt.Type == event.StatePowerLevels && evt.Content.AsPowerLevels().GetUserLevel(ghostOf(bob.JID)) == 0
	})

	// After the removal and the leave: the remaining members' devices get the Matrix
	// user's message, carol's and dave's do not.
	_, err = e.alice.SendText(e.ctx, room, "rehearsal moved")
	e.must(err)
	text := url.Values{"kind": {"text"}, "chat": {group}}
	for _, dev := range []struct {
		user   *kit.SimUser
		device string
	}{{creator, creator.JID}, {bob, bob.JID}, {bob, strings.Replace(bob.JID, "@", ":1@", 1)}} {
		q := url.Values{"kind": {"text"}, "chat": {group}, "device": {dev.device}}
		_, err := dev.user.WaitInbox(e.ctx, 30*time.Second, "the message after the churn on "+dev.device, q, inboxText("rehearsal moved"))
		e.must(err)
	}
	for _, gone := range []*kit.SimUser{carol, dave} {
		items, _, err := gone.Inbox(e.ctx, 0, 2*time.Second, text)
		e.must(err)
		for _, item := range items {
			if inboxText("rehearsal moved")(item) {
				t.Errorf("%s, no longer a member, received the message", gone.JID)
			}
		}
		errs, _, err := gone.Inbox(e.ctx, 0, 0, url.Values{"kind": {"error"}, "chat": {group}})
		e.must(err)
		if len(errs) > 0 {
			t.Errorf("%s got undecryptable group traffic after leaving: %v", gone.JID, errs)
		}
	}
}

// A group the Matrix user is added to after it was made becomes a portal with the
// members of that moment; removing the Matrix user from the group takes them out of
// the portal, and later group messages no longer reach them.
func TestSynapseGroupAddedLaterThenRemoved(t *testing.T) {
	e := startStack(t, false, nil)
	c := e.openChat("+491707772001", "+491707772002")
	bob, err := e.st.Sim.NewUser(e.ctx, "+491707772003", nil)
	e.must(err)
	var group struct {
		JID string `json:"jid"`
	}
	e.must(e.st.Sim.Call(e.ctx, "POST", "/v1/groups", map[string]any{
		"actor": c.peer.JID, "subject": "Book club", "participants": []string{bob.JID}}, &group))
	_, err = bob.SendText(e.ctx, group.JID, "before the Matrix user was there")
	e.must(err)
	path := "/v1/groups/" + url.PathEscape(group.JID) + "/participants"
	e.must(e.st.Sim.Call(e.ctx, "POST", path, map[string]any{"actor": c.peer.JID, "action": "add", "participants": []string{c.account}}, nil))

	nameEvt, err := e.alice.WaitEvent(e.ctx, 30*time.Second, "the portal of the group the user was added to", func(evt *event.Event) bool {
		return evt.Type == event.StateRoomName && evt.Content.AsRoomName().Name == "Book club"
	})
	e.must(err)
	room := nameEvt.RoomID
	_, err = e.alice.WaitEvent(e.ctx, 30*time.Second, "own join", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == e.alice.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	mark := e.alice.Mark()
	_, err = bob.SendText(e.ctx, group.JID, "welcome")
	e.must(err)
	_, err = e.alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "bob's welcome", kit.IsMessage(room, ghostOf(bob.JID), "welcome"))
	e.must(err)

	e.must(e.st.Sim.Call(e.ctx, "POST", path, map[string]any{"actor": c.peer.JID, "action": "remove", "participants": []string{c.account}}, nil))
	_, err = e.alice.WaitEvent(e.ctx, 30*time.Second, "own removal from the portal", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == e.alice.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipLeave
	})
	e.must(err)
	mark = e.alice.Mark()
	_, err = bob.SendText(e.ctx, group.JID, "after the removal")
	e.must(err)
	time.Sleep(3 * time.Second)
	after, _, _ := e.alice.EventsAfter(mark)
	for _, evt := range after {
		if evt.RoomID != room {
			continue
		}
		if kit.IsMessage(room, ghostOf(bob.JID), "after the removal")(evt) {
			t.Errorf("a group message reached the removed Matrix user")
		}
		if evt.Type == event.StateMember && evt.GetStateKey() == e.alice.ID.String() && evt.Content.AsMember().Membership != event.MembershipLeave {
			t.Errorf("the removed Matrix user's membership changed again: %s", evt.Content.AsMember().Membership)
		}
	}
}

// Issue 6's scenario in one group, on SQLite and PostgreSQL: two Matrix users of the
// bridge and three WhatsApp users (one with two devices) exchange messages, each
// arriving exactly once everywhere; then a member is removed (and gets nothing after),
// the subject changes and one of the Matrix users is made an admin.
func TestSynapseGroupTwoMatrixThreeMeta(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := "SQLite"
		if pg {
			name = "PostgreSQL"
		}
		t.Run(name, func(t *testing.T) { testGroupTwoMatrixThreeMeta(t, pg) })
	}
}

func testGroupTwoMatrixThreeMeta(t *testing.T, pg bool) {
	e := startStack(t, pg, nil)
	alice, _, aliceAccount := e.loginOnly("alice", "+491707773001")
	bob, _, bobAccount := e.loginOnly("bob", "+491707773002")
	e.alice = alice
	m1, err := e.st.Sim.NewUser(e.ctx, "+491707773003", map[string]any{"devices": 2})
	e.must(err)
	m2, err := e.st.Sim.NewUser(e.ctx, "+491707773004", nil)
	e.must(err)
	m3, err := e.st.Sim.NewUser(e.ctx, "+491707773005", nil)
	e.must(err)
	var created struct {
		JID string `json:"jid"`
	}
	e.must(e.st.Sim.Call(e.ctx, "POST", "/v1/groups", map[string]any{
		"actor": m1.JID, "subject": "Allotment", "participants": []string{aliceAccount, bobAccount, m2.JID, m3.JID}}, &created))
	group := created.JID
	portalOf := func(u *kit.User) id.RoomID {
		t.Helper()
		evt, err := u.WaitEvent(e.ctx, 30*time.Second, "the group's portal", func(evt *event.Event) bool {
			return evt.Type == event.StateRoomName && evt.Content.AsRoomName().Name == "Allotment"
		})
		e.must(err)
		_, err = u.WaitEvent(e.ctx, 30*time.Second, "own join", func(j *event.Event) bool {
			return j.RoomID == evt.RoomID && j.Type == event.StateMember && j.GetStateKey() == u.ID.String() &&
				j.Content.AsMember().Membership == event.MembershipJoin
		})
		e.must(err)
		return evt.RoomID
	}
	room := portalOf(alice)
	if portalOf(bob) != room {
		t.Fatal("the two Matrix users got different portals for one group")
	}

	metaDevices := []struct {
		user   *kit.SimUser
		device string
	}{{m1, m1.JID}, {m1, strings.Replace(m1.JID, "@", ":1@", 1)}, {m2, m2.JID}, {m3, m3.JID}}
	// Every Matrix message reaches every Meta device once, from its own account.
	for _, w := range []struct {
		who     *kit.User
		account string
		text    string
	}{{alice, aliceAccount, "alice: tomatoes are in"}, {bob, bobAccount, "bob: I bring the hose"}} {
		_, err := w.who.SendText(e.ctx, room, w.text)
		e.must(err)
		for _, d := range metaDevices {
			q := url.Values{"kind": {"text"}, "chat": {group}, "device": {d.device}}
			item, err := d.user.WaitInbox(e.ctx, 30*time.Second, w.text+" on "+d.device, q, inboxText(w.text))
			e.must(err)
			if item["sender"] != w.account {
				t.Errorf("%q reached %s from %v, want %s", w.text, d.device, item["sender"], w.account)
			}
		}
	}
	// Every Meta message reaches both Matrix users once, from the member's ghost.
	var m2Stanza string
	var m2Evt *event.Event
	for _, m := range []*kit.SimUser{m1, m2, m3} {
		text := "from " + m.JID
		sent, err := m.SendText(e.ctx, group, text)
		e.must(err)
		for _, u := range []*kit.User{alice, bob} {
			evt, err := u.WaitEvent(e.ctx, 30*time.Second, text, kit.IsMessage(room, ghostOf(m.JID), text))
			e.must(err)
			if m == m2 {
				m2Stanza, m2Evt = sent.ID, evt
			}
		}
	}
	// Both of the bridge's logins receive m2's edit; it is bridged once.
	_, err = m2.Send(e.ctx, map[string]any{"to": group, "kind": "edit", "text": "from m2, edited", "target": map[string]any{"id": m2Stanza}})
	e.must(err)
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "m2's edit", kit.IsEdit(room, ghostOf(m2.JID), m2Evt.ID, "from m2, edited"))
	e.must(err)
	time.Sleep(time.Second)
	for _, u := range []*kit.User{alice, bob} {
		for _, m := range []*kit.SimUser{m1, m2, m3} {
			if n := len(distinct(u.Events(kit.IsMessage(room, ghostOf(m.JID), "from "+m.JID)))); n != 1 {
				t.Errorf("%s sees %s's message %d times", u.ID, m.JID, n)
			}
		}
		if n := len(distinct(u.Events(kit.IsEdit(room, ghostOf(m2.JID), m2Evt.ID, "from m2, edited")))); n != 1 {
			t.Errorf("%s sees m2's edit %d times", u.ID, n)
		}
	}
	for _, d := range metaDevices {
		items, _, err := d.user.Inbox(e.ctx, 0, 0, url.Values{"kind": {"text"}, "chat": {group}, "device": {d.device}})
		e.must(err)
		counts := map[string]int{}
		for _, it := range items {
			text, _ := kit.ItemData(it)["text"].(string)
			counts[text]++
		}
		for text, n := range counts {
			if n != 1 {
				t.Errorf("%s got %q %d times", d.device, text, n)
			}
		}
	}

	// Churn: m3 removed, the subject changed by m2, bob made an admin.
	path := "/v1/groups/" + url.PathEscape(group)
	e.must(e.st.Sim.Call(e.ctx, "POST", path+"/participants", map[string]any{"actor": m1.JID, "action": "remove", "participants": []string{m3.JID}}, nil))
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "m3's removal", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == ghostOf(m3.JID).String() &&
			evt.Content.AsMember().Membership == event.MembershipLeave
	})
	e.must(err)
	e.must(e.st.Sim.Call(e.ctx, "PUT", path+"/subject", map[string]any{"actor": m2.JID, "subject": "Allotment 2027"}, nil))
	_, err = bob.WaitEvent(e.ctx, 30*time.Second, "the new subject", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateRoomName && evt.Content.AsRoomName().Name == "Allotment 2027" && evt.Sender == ghostOf(m2.JID)
	})
	e.must(err)
	e.must(e.st.Sim.Call(e.ctx, "POST", path+"/participants", map[string]any{"actor": m1.JID, "action": "promote", "participants": []string{bobAccount}}, nil))
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "bob made an admin", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StatePowerLevels && evt.Content.AsPowerLevels().GetUserLevel(bob.ID) == 50
	})
	e.must(err)

	// After the removal: the remaining devices get bob's message, m3's does not.
	_, err = bob.SendText(e.ctx, room, "bob: m3 has left us")
	e.must(err)
	for _, d := range metaDevices[:3] {
		q := url.Values{"kind": {"text"}, "chat": {group}, "device": {d.device}}
		_, err := d.user.WaitInbox(e.ctx, 30*time.Second, "the message after the removal on "+d.device, q, inboxText("bob: m3 has left us"))
		e.must(err)
	}
	items, _, err := m3.Inbox(e.ctx, 0, 2*time.Second, url.Values{"chat": {group}, "kind": {"text,error"}})
	e.must(err)
	for _, it := range items {
		if text, _ := kit.ItemData(it)["text"].(string); text == "bob: m3 has left us" || it["kind"] == "error" {
			t.Errorf("the removed member got %v", it)
		}
	}
}

// distinct drops repeated event IDs (an event can come in /sync more than once).
func distinct(evts []*event.Event) []*event.Event {
	seen := map[id.EventID]bool{}
	var out []*event.Event
	for _, evt := range evts {
		if !seen[evt.ID] {
			seen[evt.ID] = true
			out = append(out, evt)
		}
	}
	return out
}

// Every kind of content of the 1:1 bridge works in a group, both ways: an image (the
// same bytes arrive), reactions, edits and deletions, each attributed to its sender.
func TestSynapseGroupContent(t *testing.T) {
	e := startStack(t, false, nil)
	c := e.openChat("+491707774001", "+491707774002")
	bob, err := e.st.Sim.NewUser(e.ctx, "+491707774003", nil)
	e.must(err)
	group, room := c.openGroup(c.peer, "Photos", bob)
	bobGhost := ghostOf(bob.JID)
	q := func(kind string) url.Values { return url.Values{"kind": {kind}, "chat": {group}} }

	// Meta → Matrix: bob's image arrives from his ghost, byte for byte.
	photo := randomData(t, 150_000)
	mark := e.alice.Mark()
	_, err = bob.Send(e.ctx, map[string]any{"to": group, "kind": "image",
		"media": map[string]any{"data": base64.StdEncoding.EncodeToString(photo), "mimetype": "image/jpeg"}})
	e.must(err)
	imgEvt, err := e.alice.WaitEventAfter(e.ctx, mark, 60*time.Second, "bob's image", func(evt *event.Event) bool {
		return kit.IsMessage(room, bobGhost, "")(evt) && evt.Content.AsMessage().MsgType == event.MsgImage
	})
	e.must(err)
	if got := download(t, e.alice, imgEvt.Content.AsMessage()); !bytes.Equal(got, photo) {
		t.Errorf("bob's image arrived as %d different bytes", len(got))
	}

	// Matrix → Meta: the Matrix user's image reaches both members, verified.
	png := outPNG(t, 200, 100)
	_, err = e.alice.Send(e.ctx, room, &event.MessageEventContent{MsgType: event.MsgImage, Body: "plan.png", URL: c.upload(t, png, "image/png"),
		Info: &event.FileInfo{MimeType: "image/png", Size: len(png)}})
	e.must(err)
	for _, u := range []*kit.SimUser{c.peer, bob} {
		_, err := u.WaitInbox(e.ctx, 60*time.Second, "the Matrix user's image", q("media"), isMediaWithSHA(sha256Hex(png)))
		e.must(err)
	}

	// A text each way to react to, edit and delete.
	bobText, err := bob.SendText(e.ctx, group, "meet at the gate")
	e.must(err)
	bobEvt := waitMessage(t, e.alice, mark, room, bobGhost, "meet at the gate")
	aliceEvtID, err := e.alice.SendText(e.ctx, room, "which gate?")
	e.must(err)
	aliceItem, err := bob.WaitInbox(e.ctx, 30*time.Second, "the Matrix user's text", q("text"), inboxText("which gate?"))
	e.must(err)

	// Reactions.
	mark = e.alice.Mark()
	_, err = bob.Send(e.ctx, map[string]any{"to": group, "kind": "reaction", "text": "👍",
		"target": map[string]any{"id": aliceItem["id"], "sender": c.account}})
	e.must(err)
	waitFor(t, e.alice, mark, "bob's reaction", kit.IsReaction(room, bobGhost, aliceEvtID, "👍\ufe0f"))
	_, err = e.alice.Client.SendReaction(e.ctx, room, bobEvt.ID, "🎉")
	e.must(err)
	_, err = bob.WaitInbox(e.ctx, 30*time.Second, "the Matrix user's reaction", q("reaction"), func(it map[string]any) bool {
		return kit.ItemKey(it, "target")["id"] == bobText.ID && kit.ItemData(it)["text"] == "🎉"
	})
	e.must(err)

	// Edits.
	mark = e.alice.Mark()
	_, err = bob.Send(e.ctx, map[string]any{"to": group, "kind": "edit", "text": "meet at the north gate", "target": map[string]any{"id": bobText.ID}})
	e.must(err)
	waitFor(t, e.alice, mark, "bob's edit", kit.IsEdit(room, bobGhost, bobEvt.ID, "meet at the north gate"))
	edit := &event.MessageEventContent{MsgType: event.MsgText, Body: "* which gate, north?"}
	edit.SetEdit(aliceEvtID)
	edit.NewContent = &event.MessageEventContent{MsgType: event.MsgText, Body: "which gate, north?"}
	_, err = e.alice.Send(e.ctx, room, edit)
	e.must(err)
	_, err = bob.WaitInbox(e.ctx, 30*time.Second, "the Matrix user's edit", q("edit"), func(it map[string]any) bool {
		return kit.ItemKey(it, "target")["id"] == aliceItem["id"] && kit.ItemData(it)["text"] == "which gate, north?"
	})
	e.must(err)

	// Deletions.
	mark = e.alice.Mark()
	_, err = bob.Send(e.ctx, map[string]any{"to": group, "kind": "revoke", "target": map[string]any{"id": bobText.ID}})
	e.must(err)
	waitFor(t, e.alice, mark, "the redaction of bob's revoked message", kit.IsRedaction(room, bobGhost, bobEvt.ID))
	_, err = e.alice.Redact(e.ctx, room, aliceEvtID)
	e.must(err)
	_, err = bob.WaitInbox(e.ctx, 30*time.Second, "the Matrix user's revoke", q("revoke"), func(it map[string]any) bool {
		return kit.ItemKey(it, "target")["id"] == aliceItem["id"]
	})
	e.must(err)
}
