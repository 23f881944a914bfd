//go:build synapse

package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

// loginOnly logs a new Matrix user in with number and waits until the login is
// connected; it returns the user, the login ID and the interop account.
func (e *env) loginOnly(name, number string) (*kit.User, string, string) {
	e.t.Helper()
	u := e.user(name)
	loginID, err := e.st.LoginBridge(e.ctx, u, "whatsapp", number)
	e.must(err)
	_, err = e.st.WaitLoginState(e.ctx, u, loginID, "CONNECTED", 30*time.Second)
	e.must(err)
	return u, loginID, "7-" + number[1:] + "@interop"
}

// simGroupInfo is metasim's view of a group.
type simGroupInfo struct {
	Subject     string   `json:"subject"`
	Description string   `json:"description"`
	Members     []string `json:"members"`
	Admins      []string `json:"admins"`
}

// simGroup asks metasim for a group.
func (e *env) simGroup(group string) simGroupInfo {
	e.t.Helper()
	var g simGroupInfo
	e.must(e.st.Sim.Call(e.ctx, http.MethodGet, "/v1/groups/"+url.PathEscape(group), nil, &g))
	return g
}

// waitSimGroup polls metasim until the group satisfies cond (the bridge handles a
// Matrix event after the homeserver accepted it).
func (e *env) waitSimGroup(group, what string, cond func(simGroupInfo) bool) simGroupInfo {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		g := e.simGroup(group)
		if cond(g) {
			return g
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: the group is %+v", what, g)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isNotice matches a notice in room that says every part.
func isNotice(room id.RoomID, parts ...string) func(*event.Event) bool {
	return func(evt *event.Event) bool {
		if evt.RoomID != room || evt.Type != event.EventMessage {
			return false
		}
		msg := evt.Content.AsMessage()
		if msg.MsgType != event.MsgNotice {
			return false
		}
		for _, p := range parts {
			if !strings.Contains(msg.Body, p) {
				return false
			}
		}
		return true
	}
}

// A Matrix user creates a group through the provisioning API with two WhatsApp users,
// one of whom has not opted in: the group exists on Meta's side with the other, the
// refusal is in the answer and in the room; then inviting a ghost adds its user, an
// invite the gateway refuses is undone with a notice, kicking removes, renaming sets
// the subject (a name over 100 characters is refused), the topic the description, a
// new power level of 50 makes an admin, and reading a member's message sends them a
// read receipt.
func TestSynapseGroupFromMatrix(t *testing.T) {
	e := startStack(t, false, nil)
	alice, loginID, account := e.loginOnly("alice", "+491707780001")
	e.alice = alice
	bob, err := e.st.Sim.NewUser(e.ctx, "+491707780002", nil)
	e.must(err)
	carol, err := e.st.Sim.NewUser(e.ctx, "+491707780003", map[string]any{"opt_in": []int{}})
	e.must(err)
	dave, err := e.st.Sim.NewUser(e.ctx, "+491707780004", nil)
	e.must(err)

	var created struct {
		ID     string                    `json:"id"`
		MXID   id.RoomID                 `json:"mxid"`
		Failed map[string]map[string]any `json:"failed_participants"`
	}
	e.must(e.st.Bridge.Provision(e.ctx, http.MethodPost, "/v3/create_group/group?login_id="+url.QueryEscape(loginID),
		alice.ID.String(), alice.Client.AccessToken, map[string]any{
			"name":         map[string]any{"name": "Hiking club"},
			"topic":        map[string]any{"topic": "Sundays"},
			"participants": []string{bob.JID, carol.JID},
		}, &created))
	group, room := created.ID, created.MXID
	if room == "" || !strings.HasSuffix(group, "@g.us") {
		t.Fatalf("create_group answered %+v", created)
	}
	if reason, _ := created.Failed[carol.JID]["reason"].(string); !strings.Contains(reason, "has not turned on third-party chats") || len(created.Failed) != 1 {
		t.Errorf("failed participants %v, want carol's refusal", created.Failed)
	}
	g := e.simGroup(group)
	if !sameSet(g.Members, account, bob.JID) || g.Subject != "Hiking club" || g.Description != "Sundays" {
		t.Fatalf("the gateway's group %+v", g)
	}
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "the notice naming carol", isNotice(room, "Not added to the group", "+49 170 7780003", "third-party chats"))
	e.must(err)
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "bob's ghost in the room", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == ghostOf(bob.JID).String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "own join", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == alice.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)

	t.Run("InviteAdds", func(t *testing.T) {
		_, err := alice.Client.InviteUser(e.ctx, room, &mautrix.ReqInviteUser{UserID: ghostOf(dave.JID)})
		e.must(err)
		e.waitSimGroup(group, "dave added", func(g simGroupInfo) bool { return slices.Contains(g.Members, dave.JID) })
		_, err = alice.WaitEvent(e.ctx, 30*time.Second, "dave's ghost joining", func(evt *event.Event) bool {
			return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == ghostOf(dave.JID).String() &&
				evt.Content.AsMember().Membership == event.MembershipJoin
		})
		e.must(err)
	})

	t.Run("RefusedInviteIsUndone", func(t *testing.T) {
		mark := alice.Mark()
		_, err := alice.Client.InviteUser(e.ctx, room, &mautrix.ReqInviteUser{UserID: ghostOf(carol.JID)})
		e.must(err)
		_, err = alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "the refusal notice", isNotice(room, "+49 170 7780003", "has not turned on third-party chats"))
		e.must(err)
		_, err = alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "carol's invite undone", func(evt *event.Event) bool {
			return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == ghostOf(carol.JID).String() &&
				evt.Content.AsMember().Membership == event.MembershipLeave
		})
		e.must(err)
		if g := e.simGroup(group); slices.Contains(g.Members, carol.JID) {
			t.Errorf("carol is in the group: %+v", g)
		}
	})

	t.Run("KickRemoves", func(t *testing.T) {
		_, err := alice.Client.KickUser(e.ctx, room, &mautrix.ReqKickUser{UserID: ghostOf(dave.JID)})
		e.must(err)
		e.waitSimGroup(group, "dave removed", func(g simGroupInfo) bool { return !slices.Contains(g.Members, dave.JID) })
	})

	t.Run("RenameAndTopic", func(t *testing.T) {
		_, err := alice.Client.SendStateEvent(e.ctx, room, event.StateRoomName, "", &event.RoomNameEventContent{Name: "Hiking club 2027"})
		e.must(err)
		e.waitSimGroup(group, "the new subject", func(g simGroupInfo) bool { return g.Subject == "Hiking club 2027" })
		mark := alice.Mark()
		_, err = alice.Client.SendStateEvent(e.ctx, room, event.StateRoomName, "", &event.RoomNameEventContent{Name: strings.Repeat("n", 101)})
		e.must(err)
		_, err = alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "the long name's refusal", isNotice(room, "101 characters", "at most 100"))
		e.must(err)
		if g := e.simGroup(group); g.Subject != "Hiking club 2027" {
			t.Errorf("subject after a refused name: %q", g.Subject)
		}
		_, err = alice.Client.SendStateEvent(e.ctx, room, event.StateTopic, "", &event.TopicEventContent{Topic: "Every other Sunday"})
		e.must(err)
		e.waitSimGroup(group, "the new description", func(g simGroupInfo) bool { return g.Description == "Every other Sunday" })
	})

	t.Run("PowerLevelPromotes", func(t *testing.T) {
		var pl event.PowerLevelsEventContent
		e.must(alice.Client.StateEvent(e.ctx, room, event.StatePowerLevels, "", &pl))
		pl.SetUserLevel(ghostOf(bob.JID), 50)
		_, err := alice.Client.SendStateEvent(e.ctx, room, event.StatePowerLevels, "", &pl)
		e.must(err)
		e.waitSimGroup(group, "bob promoted", func(g simGroupInfo) bool { return slices.Contains(g.Admins, bob.JID) })
	})

	t.Run("Typing", func(t *testing.T) {
		_, err := alice.Client.UserTyping(e.ctx, room, true, 20*time.Second)
		e.must(err)
		_, err = bob.WaitInbox(e.ctx, 30*time.Second, "alice typing in the group", url.Values{"kind": {"chatstate"}, "chat": {group}}, func(it map[string]any) bool {
			return kit.ItemData(it)["chat_state"] == "composing" && it["sender"] == account
		})
		e.must(err)
		_, err = alice.Client.UserTyping(e.ctx, room, false, 0)
		e.must(err)
		mark := alice.Mark()
		e.must(bob.Typing(e.ctx, group, "composing"))
		_, err = alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "bob's ghost typing", kit.IsTyping(room, ghostOf(bob.JID), true))
		e.must(err)
	})

	t.Run("ReadReceipt", func(t *testing.T) {
		mark := alice.Mark()
		sent, err := bob.SendText(e.ctx, group, "who brings the map?")
		e.must(err)
		evt := waitMessage(t, alice, mark, room, ghostOf(bob.JID), "who brings the map?")
		e.must(alice.Client.SendReceipt(e.ctx, room, evt.ID, event.ReceiptTypeRead, nil))
		got, err := bob.WaitInbox(e.ctx, 30*time.Second, "alice's read receipt", url.Values{"kind": {"receipt"}, "id": {sent.ID}}, func(it map[string]any) bool {
			return kit.ItemData(it)["receipt"] == "read"
		})
		e.must(err)
		if got["sender"] != account {
			t.Errorf("the receipt came from %v, want %s", got["sender"], account)
		}

		// Bob reads alice's message: the room shows his ghost's read receipt.
		aliceEvt, err := alice.SendText(e.ctx, room, "I do")
		e.must(err)
		item, err := bob.WaitInbox(e.ctx, 30*time.Second, "alice's message", url.Values{"kind": {"text"}, "chat": {group}}, inboxText("I do"))
		e.must(err)
		stanzaID, _ := item["id"].(string)
		mark = alice.Mark()
		e.must(e.st.Sim.Call(e.ctx, http.MethodPost, "/v1/users/"+bob.JID+"/receipts", map[string]any{
			"chat": group, "ids": []string{stanzaID}, "type": "read", "sender": account}, nil))
		_, err = alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "bob's ghost's read receipt", kit.IsReadReceipt(room, ghostOf(bob.JID), aliceEvt))
		e.must(err)
	})

	t.Run("Capabilities", func(t *testing.T) {
		var caps struct {
			GroupCreation map[string]struct {
				Name struct {
					MaxLength int `json:"max_length"`
				} `json:"name"`
				Participants struct{ Allowed bool } `json:"participants"`
			} `json:"group_creation"`
		}
		e.must(e.st.Bridge.Provision(e.ctx, http.MethodGet, "/v3/capabilities", alice.ID.String(), alice.Client.AccessToken, nil, &caps))
		g, ok := caps.GroupCreation["group"]
		if !ok || g.Name.MaxLength != 100 || !g.Participants.Allowed {
			t.Errorf("provisioning capabilities %+v", caps)
		}
	})
}

// Two Matrix users of the bridge in one WhatsApp group share its portal and each
// writes as their own interop account; a third, whose login is not in the group, is
// told so when they write; one leaving the room (with bridge_matrix_leave on) leaves
// the group.
func TestSynapseGroupTwoMatrixUsers(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		o.BridgeConfig = map[string]any{"bridge.bridge_matrix_leave": true}
	})
	alice, _, aliceAccount := e.loginOnly("alice", "+491707790001")
	bobM, _, bobAccount := e.loginOnly("bob", "+491707790002")
	carolM, _, _ := e.loginOnly("carol", "+491707790003")
	e.alice = alice
	meta, err := e.st.Sim.NewUser(e.ctx, "+491707790004", nil)
	e.must(err)
	var created struct {
		JID string `json:"jid"`
	}
	e.must(e.st.Sim.Call(e.ctx, http.MethodPost, "/v1/groups", map[string]any{
		"actor": meta.JID, "subject": "Neighbours", "participants": []string{aliceAccount, bobAccount}}, &created))
	group := created.JID
	joined := func(u *kit.User) id.RoomID {
		t.Helper()
		evt, err := u.WaitEvent(e.ctx, 30*time.Second, "own join in the group portal", func(evt *event.Event) bool {
			return evt.Type == event.StateMember && evt.GetStateKey() == u.ID.String() && evt.Content.AsMember().Membership == event.MembershipJoin &&
				roomName(e, u, evt.RoomID) == "Neighbours"
		})
		e.must(err)
		return evt.RoomID
	}
	room, bobRoom := joined(alice), joined(bobM)
	if room != bobRoom {
		t.Fatalf("alice's portal %s, bob's %s: the group's portal is not shared", room, bobRoom)
	}

	for _, w := range []struct {
		who     *kit.User
		account string
		text    string
	}{{alice, aliceAccount, "hello from alice"}, {bobM, bobAccount, "hello from bob"}} {
		_, err := w.who.SendText(e.ctx, room, w.text)
		e.must(err)
		item, err := meta.WaitInbox(e.ctx, 30*time.Second, w.text, url.Values{"kind": {"text"}, "chat": {group}}, inboxText(w.text))
		e.must(err)
		if item["sender"] != w.account {
			t.Errorf("%q came from %v, want %s", w.text, item["sender"], w.account)
		}
	}

	// Alice mentions bob, a Matrix user of the bridge, and answers the Meta member:
	// the mention names bob's account, the reply quotes the member.
	mark0 := alice.Mark()
	metaMsg, err := meta.SendText(e.ctx, group, "who waters the plants?")
	e.must(err)
	metaEvt := waitMessage(t, alice, mark0, room, ghostOf(meta.JID), "who waters the plants?")
	_, err = alice.Send(e.ctx, room, &event.MessageEventContent{MsgType: event.MsgText,
		Body: "bob does", Format: event.FormatHTML,
		FormattedBody: fmt.Sprintf(`<a href="https://matrix.to/#/%s">bob</a> does`, bobM.ID),
		Mentions:      &event.Mentions{UserIDs: []id.UserID{bobM.ID}},
		RelatesTo:     (&event.RelatesTo{}).SetReplyTo(metaEvt.ID)})
	e.must(err)
	item, err := meta.WaitInbox(e.ctx, 30*time.Second, "alice's mention of bob", url.Values{"kind": {"text"}, "chat": {group}}, func(it map[string]any) bool {
		text, _ := kit.ItemData(it)["text"].(string)
		return strings.HasSuffix(text, " does")
	})
	e.must(err)
	if mentions, _ := kit.ItemData(item)["mentions"].([]any); len(mentions) != 1 || mentions[0] != bobAccount {
		t.Errorf("mentions %v, want bob's account %s", mentions, bobAccount)
	}
	if reply := kit.ItemKey(item, "reply_to"); reply["id"] != metaMsg.ID || reply["participant"] != meta.JID {
		t.Errorf("reply_to %v, want %s by %s", reply, metaMsg.ID, meta.JID)
	}

	// Carol is invited on Matrix only (by alice, once an admin); her login is not in
	// the group.
	e.must(e.st.Sim.Call(e.ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/participants", map[string]any{
		"actor": meta.JID, "action": "promote", "participants": []string{aliceAccount}}, nil))
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "alice made an admin", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StatePowerLevels && evt.Content.AsPowerLevels().GetUserLevel(alice.ID) >= 50
	})
	e.must(err)
	_, err = alice.Client.InviteUser(e.ctx, room, &mautrix.ReqInviteUser{UserID: carolM.ID})
	e.must(err)
	_, err = carolM.WaitEvent(e.ctx, 30*time.Second, "carol's join", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == carolM.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	mark := carolM.Mark()
	_, err = carolM.SendText(e.ctx, room, "may I join?")
	e.must(err)
	_, err = carolM.WaitEventAfter(e.ctx, mark, 30*time.Second, "carol's refusal", isNotice(room, "is not a member of this group"))
	e.must(err)
	if _, err := meta.WaitInbox(e.ctx, 2*time.Second, "carol's message", url.Values{"kind": {"text"}, "chat": {group}}, inboxText("may I join?")); err == nil {
		t.Error("carol's message reached the group")
	}
	_, err = bobM.Client.LeaveRoom(e.ctx, room)
	e.must(err)
	e.waitSimGroup(group, "bob leaving", func(g simGroupInfo) bool {
		return !slices.Contains(g.Members, bobAccount) && slices.Contains(g.Members, aliceAccount)
	})
}

// roomName is the room's name as u sees it ("" when it has none or u cannot see it).
func roomName(e *env, u *kit.User, room id.RoomID) string {
	var name event.RoomNameEventContent
	if err := u.Client.StateEvent(e.ctx, room, event.StateRoomName, "", &name); err != nil {
		return ""
	}
	return name.Name
}

// sameSet says whether got holds exactly want, in any order.
func sameSet(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// The create-group command in a Matrix room the user made, with the ghosts of the
// people to add invited, turns that room into the new group's portal: the ghosts who
// may join do, and the reply names the one who may not.
func TestSynapseGroupCreateCommand(t *testing.T) {
	e := startStack(t, false, nil)
	alice, _, account := e.loginOnly("alice", "+491707800001")
	e.alice = alice
	bob, err := e.st.Sim.NewUser(e.ctx, "+491707800002", nil)
	e.must(err)
	carol, err := e.st.Sim.NewUser(e.ctx, "+491707800003", map[string]any{"opt_in": []int{}})
	e.must(err)
	bot := id.NewUserID("metainteropbot", kit.ServerName)
	created, err := alice.Client.CreateRoom(e.ctx, &mautrix.ReqCreateRoom{
		Name:               "Book club",
		Invite:             []id.UserID{bot, ghostOf(bob.JID), ghostOf(carol.JID)},
		PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{alice.ID: 100, bot: 100}},
	})
	e.must(err)
	room := created.RoomID
	_, err = alice.WaitEvent(e.ctx, 30*time.Second, "the bot joining", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == bot.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	mark := alice.Mark()
	_, err = alice.SendText(e.ctx, room, "!meta create-group")
	e.must(err)
	// Two answers from the bot, in either order: the command's reply and the notice
	// naming who could not be added.
	botSays := func(what, text string) string {
		t.Helper()
		evt, err := alice.WaitEventAfter(e.ctx, mark, 30*time.Second, what, func(evt *event.Event) bool {
			return evt.RoomID == room && evt.Sender == bot && evt.Type == event.EventMessage && strings.Contains(evt.Content.AsMessage().Body, text)
		})
		e.must(err)
		return evt.Content.AsMessage().Body
	}
	body := botSays("the command's answer", "Successfully created group")
	if refused := botSays("the notice of who was not added", "third-party chats"); !strings.Contains(refused, "+49 170 7800003") {
		t.Errorf("the notice of refused participants is %q, want carol's number", refused)
	}
	group := body[strings.Index(body, "`")+1:]
	group = group[:strings.Index(group, "`")]
	if g := e.simGroup(group); !sameSet(g.Members, account, bob.JID) || g.Subject != "Book club" {
		t.Errorf("the gateway's group %+v", g)
	}
	_, err = alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "bob's ghost joining", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == ghostOf(bob.JID).String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	_, err = alice.SendText(e.ctx, room, "first chapter by Friday")
	e.must(err)
	_, err = bob.WaitInbox(e.ctx, 30*time.Second, "alice's message in the new group", url.Values{"kind": {"text"}, "chat": {group}}, inboxText("first chapter by Friday"))
	e.must(err)
}

// With relay mode on and a member's login set as the group portal's relay, a Matrix
// user without a login writes in the group through that login, named in the text.
func TestSynapseGroupRelay(t *testing.T) {
	e := startStack(t, false, func(o *kit.StackOptions) {
		o.BridgeConfig = map[string]any{
			"bridge.relay.enabled":        true,
			"bridge.relay.admin_only":     false,
			"bridge.relay.prefer_default": false,
		}
	})
	alice, _, account := e.loginOnly("alice", "+491707810001")
	e.alice = alice
	meta, err := e.st.Sim.NewUser(e.ctx, "+491707810002", nil)
	e.must(err)
	var created struct {
		JID string `json:"jid"`
	}
	e.must(e.st.Sim.Call(e.ctx, http.MethodPost, "/v1/groups", map[string]any{
		"actor": meta.JID, "subject": "Allotment", "participants": []string{account}}, &created))
	group := created.JID
	e.must(e.st.Sim.Call(e.ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/participants", map[string]any{
		"actor": meta.JID, "action": "promote", "participants": []string{account}}, nil))
	evt, err := alice.WaitEvent(e.ctx, 30*time.Second, "alice made an admin in the portal", func(evt *event.Event) bool {
		return evt.Type == event.StatePowerLevels && evt.Content.AsPowerLevels().GetUserLevel(alice.ID) >= 50
	})
	e.must(err)
	room := evt.RoomID

	mark := alice.Mark()
	_, err = alice.SendText(e.ctx, room, "!meta set-relay")
	e.must(err)
	reply, err := alice.WaitEventAfter(e.ctx, mark, 30*time.Second, "set-relay's answer", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.EventMessage && evt.Sender.Localpart() == "metainteropbot"
	})
	e.must(err)
	if body := reply.Content.AsMessage().Body; !strings.Contains(strings.ToLower(body), "relay") || strings.Contains(body, "not") {
		t.Fatalf("set-relay answered %q", body)
	}

	dave := e.user("dave")
	_, err = alice.Client.InviteUser(e.ctx, room, &mautrix.ReqInviteUser{UserID: dave.ID})
	e.must(err)
	_, err = dave.WaitEvent(e.ctx, 30*time.Second, "dave's join", func(evt *event.Event) bool {
		return evt.RoomID == room && evt.Type == event.StateMember && evt.GetStateKey() == dave.ID.String() &&
			evt.Content.AsMember().Membership == event.MembershipJoin
	})
	e.must(err)
	_, err = dave.SendText(e.ctx, room, "the tomatoes are ripe")
	e.must(err)
	item, err := meta.WaitInbox(e.ctx, 30*time.Second, "dave's relayed message", url.Values{"kind": {"text"}, "chat": {group}}, func(it map[string]any) bool {
		text, _ := kit.ItemData(it)["text"].(string)
		return strings.Contains(text, "the tomatoes are ripe")
	})
	e.must(err)
	if item["sender"] != account {
		t.Errorf("the relayed message came from %v, want the relay's account %s", item["sender"], account)
	}
	if text, _ := kit.ItemData(item)["text"].(string); !strings.Contains(text, dave.ID.Localpart()) {
		t.Errorf("the relayed text %q does not name dave", text)
	}
}
