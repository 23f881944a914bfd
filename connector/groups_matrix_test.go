package connector

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/status"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/store/sqlstore/sqltest"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simtest"
)

func TestGroupRefusal(t *testing.T) {
	tests := []struct {
		code int
		want string
	}{
		{403, "Bob has not turned on third-party chats for this service on WhatsApp, so they cannot be added"},
		{404, "Bob is not a WhatsApp user"},
		{406, "Bob cannot be added: the group is full (256 members at most)"},
		{409, "Bob is already in the group"},
		{500, "Meta's gateway refused to add Bob (500)"},
	}
	for _, tt := range tests {
		if got := groupRefusal(tt.code, "Bob", "WhatsApp"); got != tt.want {
			t.Errorf("%d: %q, want %q", tt.code, got, tt.want)
		}
	}
}

func TestCheckGroupSubject(t *testing.T) {
	tests := []struct {
		name, subject string
		refused       string
	}{
		{"plain", "Hiking club", ""},
		{"100 characters", strings.Repeat("a", 100), ""},
		{"100 non-ASCII characters", strings.Repeat("ü", 100), ""},
		{"101 characters", strings.Repeat("a", 101), "the group name has 101 characters; WhatsApp and Messenger allow at most 100"},
		{"empty", "", "must have a name"},
		{"blank", "   ", "must have a name"},
	}
	for _, tt := range tests {
		err := checkGroupSubject(tt.subject)
		switch {
		case tt.refused == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.name, err)
		case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)):
			t.Errorf("%s: %v, want %q", tt.name, err, tt.refused)
		}
	}
}

func TestMembershipAction(t *testing.T) {
	tests := []struct {
		name   string
		change bridgev2.MembershipChangeType
		action interop.GroupAction
		leave  bool
		ok     bool
	}{
		{"invite adds", bridgev2.Invite, interop.GroupAdd, false, true},
		{"kick removes", bridgev2.Kick, interop.GroupRemove, false, true},
		{"ban removes", bridgev2.BanJoined, interop.GroupRemove, false, true},
		{"own leave leaves", bridgev2.Leave, "", true, true},
		{"revoked invite", bridgev2.RevokeInvite, "", false, false},
		{"accepted invite", bridgev2.AcceptInvite, "", false, false},
		{"profile change", bridgev2.ProfileChange, "", false, false},
		{"join", bridgev2.Join, "", false, false},
	}
	for _, tt := range tests {
		action, leave, ok := membershipAction(tt.change)
		if action != tt.action || leave != tt.leave || ok != tt.ok {
			t.Errorf("%s: %q %v %v, want %q %v %v", tt.name, action, leave, ok, tt.action, tt.leave, tt.ok)
		}
	}
}

func TestPowerLevelAction(t *testing.T) {
	tests := []struct {
		orig, level int
		action      interop.GroupAction
		ok          bool
	}{
		{0, 50, interop.GroupPromote, true},
		{0, 100, interop.GroupPromote, true},
		{50, 0, interop.GroupDemote, true},
		{75, 49, interop.GroupDemote, true},
		{0, 49, "", false},
		{50, 75, "", false},
		{50, 50, "", false},
	}
	for _, tt := range tests {
		action, ok := powerLevelAction(tt.orig, tt.level)
		if action != tt.action || ok != tt.ok {
			t.Errorf("%d → %d: %q %v, want %q %v", tt.orig, tt.level, action, ok, tt.action, tt.ok)
		}
	}
}

// A read receipt in a group goes to each member whose messages were read, naming them
// as participant, with only their messages; the login's own messages get none.
func TestGroupReadReceipts(t *testing.T) {
	group := jid.New("120363000000000001", jid.ServerGroup)
	own := jid.Interop(simtest.IntegratorID, "491701234567")
	bob := jid.New("491702220002", jid.ServerGateway)
	carol := jid.New("491703330003", jid.ServerGateway)
	base := time.Unix(1700000000, 0)
	msg := func(sender jid.JID, stanzaID string, sec int) *database.Message {
		return &database.Message{ID: ids.MakeMessageID(group, sender, stanzaID), Timestamp: base.Add(time.Duration(sec) * time.Second)}
	}
	msgs := []*database.Message{msg(bob, "B1", 1), msg(own, "O1", 2), msg(carol, "C1", 3), msg(bob, "B2", 4)}
	got := groupReadReceipts(group, own, msgs, base.Add(5*time.Second))
	want := []interop.Receipt{
		{Chat: group, Participant: bob, IDs: []string{"B2", "B1"}, Type: interop.ReceiptRead, T: base.Add(5 * time.Second)},
		{Chat: group, Participant: carol, IDs: []string{"C1"}, Type: interop.ReceiptRead, T: base.Add(5 * time.Second)},
	}
	if len(got) != len(want) {
		t.Fatalf("receipts %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Chat != want[i].Chat || got[i].Participant != want[i].Participant || !slices.Equal(got[i].IDs, want[i].IDs) ||
			got[i].Type != want[i].Type || !got[i].T.Equal(want[i].T) {
			t.Errorf("receipt %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := groupReadReceipts(group, own, []*database.Message{msg(own, "O1", 1)}, base); len(got) != 0 {
		t.Errorf("own messages read: %+v", got)
	}
}

// A member's receipt or typing in a group shows by the member's ghost in the group
// portal; the login's own (from another of its devices) and those without a
// participant are not bridged.
func TestGroupReceiptAndTypingEvents(t *testing.T) {
	own := jid.Interop(simtest.IntegratorID, "491701234567")
	ic := offlineClient(own)
	group := "120363000000000001@g.us"
	groupJID, _ := jid.Parse(group)
	bob := jid.New("491702220002", jid.ServerGateway)
	key := ids.MakePortalKey(groupJID, ic.UserLogin.ID)
	if key.Receiver != "" {
		t.Fatalf("group portal key %+v is not shared", key)
	}
	receipt := func(participant string) stanza.Node {
		attrs := stanza.Attrs{"from": group, "id": "G1", "type": "read", "t": "1700000000"}
		if participant != "" {
			attrs["participant"] = participant
		}
		return stanza.Node{Tag: "receipt", Attrs: attrs}
	}
	evt, err := ic.receiptEvent(receipt(bob.WithDevice(2).String()))
	if err != nil || evt == nil {
		t.Fatalf("bob's receipt: %v %v", evt, err)
	}
	if evt.PortalKey != key || evt.Sender.Sender != ids.MakeUserID(bob) || evt.LastTarget != ids.MakeMessageID(groupJID, own, "G1") {
		t.Errorf("bob's receipt %+v", evt)
	}
	if evt, err := ic.receiptEvent(receipt(own.String())); evt != nil || err != nil {
		t.Errorf("own receipt bridged: %+v %v", evt, err)
	}
	if _, err := ic.receiptEvent(receipt("")); err == nil {
		t.Error("a group receipt without participant was accepted")
	}

	chatstate := func(participant string) stanza.Node {
		attrs := stanza.Attrs{"from": group}
		if participant != "" {
			attrs["participant"] = participant
		}
		return stanza.Node{Tag: "chatstate", Attrs: attrs, Content: []stanza.Node{{Tag: "composing"}}}
	}
	typing, err := ic.typingEvent(chatstate(bob.String()))
	if err != nil || typing == nil {
		t.Fatalf("bob's typing: %v %v", typing, err)
	}
	if typing.PortalKey != key || typing.Sender.Sender != ids.MakeUserID(bob) || typing.Timeout != typingTimeout {
		t.Errorf("bob's typing %+v", typing)
	}
	if typing, err := ic.typingEvent(chatstate(own.String())); typing != nil || err != nil {
		t.Errorf("own typing bridged: %+v %v", typing, err)
	}
	if _, err := ic.typingEvent(chatstate("")); err == nil {
		t.Error("a group chatstate without participant was accepted")
	}
}

// A reply in a group names the quoted member as participant, from the message's ID.
func TestGroupReplyTarget(t *testing.T) {
	group := jid.New("120363000000000001", jid.ServerGroup)
	bob := jid.New("491702220002", jid.ServerGateway)
	ic := offlineClient(jid.Interop(simtest.IntegratorID, "491701234567"))
	target := ic.replyTarget(context.Background(), nil, &database.Message{ID: ids.MakeMessageID(group, bob, "B1")})
	if target == nil || target.Sender != bob || target.StanzaID != "B1" {
		t.Fatalf("reply target %+v", target)
	}
}

// recordingBot is the bridge bot of a test: it keeps the notices it is asked to send.
type recordingBot struct {
	bridgev2.MatrixAPI
	mu      sync.Mutex
	notices []string
}

func (b *recordingBot) SendMessage(_ context.Context, _ id.RoomID, _ event.Type, content *event.Content, _ *bridgev2.MatrixSendExtra) (*mautrix.RespSendEvent, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.notices = append(b.notices, content.Parsed.(*event.MessageEventContent).Body)
	return &mautrix.RespSendEvent{EventID: "$notice"}, nil
}

// take returns the notices sent since the last call.
func (b *recordingBot) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.notices
	b.notices = nil
	return out
}

// simGroup is a group as metasim's control API shows it.
type simGroup struct {
	Subject     string   `json:"subject"`
	Description string   `json:"description"`
	Members     []string `json:"members"`
	Admins      []string `json:"admins"`
}

// Each Matrix action in a group portal makes the matching change on the gateway, and
// each refusal is told in the room in words: creating a group with a user who has not
// opted in, inviting, kicking, promoting, renaming, describing and leaving.
func TestGroupActionsAgainstSimulator(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	bot := &recordingBot{}
	sb.br.Bot = bot
	env := sb.env
	const number = "491701234567"
	account := jid.Interop(simtest.IntegratorID, number)
	loginID := ids.MakeUserLoginID(ids.WhatsApp, account)
	sb.login(t, "whatsapp", number)
	waitState(t, sb.mx, string(loginID), status.StateConnected, "")
	ic := sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)

	newUser := func(number string, optIn bool) jid.JID {
		var u struct{ JID string }
		opt := []int{}
		if optIn {
			opt = []int{simtest.IntegratorID}
		}
		env.MustCall(t, 201, "POST", "/v1/users", map[string]any{"number": number, "opt_in": opt}, &u)
		j, err := jid.Parse(u.JID)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	bob, carol, dave := newUser("+491702220002", true), newUser("+491703330003", false), newUser("+491704440004", true)

	resp, err := ic.CreateGroup(ctx, &bridgev2.GroupCreateParams{
		Type:         GroupTypeDefault,
		Participants: []networkid.UserID{ids.MakeUserID(bob), ids.MakeUserID(carol)},
		Name:         &event.RoomNameEventContent{Name: "Hiking club"},
		Topic:        &event.TopicEventContent{Topic: "Sundays"},
	})
	if err != nil {
		t.Fatal(err)
	}
	group, err := ids.ParsePortalID(resp.PortalKey.ID)
	if err != nil || !group.IsGroup() || resp.PortalKey.Receiver != "" {
		t.Fatalf("portal key %+v: %v", resp.PortalKey, err)
	}
	if f := resp.FailedParticipants[ids.MakeUserID(carol)]; f == nil || !strings.Contains(f.Reason, "has not turned on third-party chats") {
		t.Errorf("carol's refusal %+v", resp.FailedParticipants)
	}
	if len(resp.FailedParticipants) != 1 || resp.PortalInfo == nil || *resp.PortalInfo.Name != "Hiking club" {
		t.Errorf("response %+v", resp)
	}
	// The room bridgev2 makes for the group is told who was not added.
	resp.Portal.MXID = "!new:test.invalid"
	resp.Portal.RoomCreated.Set()
	var notices []string
	waitFor(t, "the notice of refused participants", func() bool {
		notices = append(notices, bot.take()...)
		return len(notices) > 0
	})
	if len(notices) != 1 || !strings.HasPrefix(notices[0], "Not added to the group:\n• +49 170 3330003") ||
		!strings.Contains(notices[0], "has not turned on third-party chats") {
		t.Errorf("creation notices %q", notices)
	}
	get := func() simGroup {
		t.Helper()
		var g simGroup
		env.MustCall(t, 200, "GET", "/v1/groups/"+url.PathEscape(group.String()), nil, &g)
		return g
	}
	if g := get(); !sameMembers(g.Members, account, bob) || g.Subject != "Hiking club" || g.Description != "Sundays" {
		t.Fatalf("created group %+v", g)
	}

	portal := &bridgev2.Portal{Portal: &database.Portal{PortalKey: resp.PortalKey, MXID: "!group:test.invalid"}}
	ghost := func(u jid.JID) *bridgev2.Ghost {
		return &bridgev2.Ghost{Ghost: &database.Ghost{ID: ids.MakeUserID(u)}}
	}
	membership := func(change bridgev2.MembershipChangeType, target bridgev2.GhostOrUserLogin) error {
		_, err := ic.HandleMatrixMembership(ctx, &bridgev2.MatrixMembershipChange{
			MatrixRoomMeta: bridgev2.MatrixRoomMeta[*event.MemberEventContent]{MatrixEventBase: bridgev2.MatrixEventBase[*event.MemberEventContent]{
				Content: &event.MemberEventContent{Membership: change.To}, Portal: portal}},
			Target: target, Type: change,
		})
		return err
	}
	refusedFor := func(err error) {
		t.Helper()
		var ms bridgev2.MessageStatus
		if !errors.As(err, &ms) || ms.Status != event.MessageStatusFail || !ms.IsCertain {
			t.Errorf("refusal %v is not a certain failure", err)
		}
	}
	wantNotice := func(what string, parts ...string) {
		t.Helper()
		notices := bot.take()
		if len(notices) != 1 {
			t.Errorf("%s: notices %q, want one", what, notices)
			return
		}
		for _, p := range parts {
			if !strings.Contains(notices[0], p) {
				t.Errorf("%s: notice %q does not say %q", what, notices[0], p)
			}
		}
	}
	bot.take()

	// Inviting dave's ghost adds dave; inviting carol, who has not opted in, is refused
	// and said so.
	if err := membership(bridgev2.Invite, ghost(dave)); err != nil {
		t.Fatal(err)
	}
	if g := get(); !sameMembers(g.Members, account, bob, dave) {
		t.Fatalf("after inviting dave: %+v", g)
	}
	if notices := bot.take(); len(notices) != 0 {
		t.Errorf("adding dave: notices %q", notices)
	}
	err = membership(bridgev2.Invite, ghost(carol))
	refusedFor(err)
	wantNotice("inviting carol", "has not turned on third-party chats for this service on WhatsApp")
	if g := get(); !sameMembers(g.Members, account, bob, dave) {
		t.Errorf("after inviting carol: %+v", g)
	}

	// Kicking bob removes him.
	if err := membership(bridgev2.Kick, ghost(bob)); err != nil {
		t.Fatal(err)
	}
	if g := get(); !sameMembers(g.Members, account, dave) {
		t.Errorf("after kicking bob: %+v", g)
	}

	// Raising dave to 50 promotes him; lowering him demotes him.
	levels := func(orig, level int) (bool, error) {
		return ic.HandleMatrixPowerLevels(ctx, &bridgev2.MatrixPowerLevelChange{
			MatrixRoomMeta: bridgev2.MatrixRoomMeta[*event.PowerLevelsEventContent]{MatrixEventBase: bridgev2.MatrixEventBase[*event.PowerLevelsEventContent]{Portal: portal}},
			Users: map[id.UserID]*bridgev2.UserPowerLevelChange{"@dave:test.invalid": {Target: ghost(dave),
				SinglePowerLevelChange: bridgev2.SinglePowerLevelChange{OrigLevel: orig, NewLevel: level, NewIsSet: true}}},
		})
	}
	if ok, err := levels(0, 50); !ok || err != nil {
		t.Fatalf("promote: %v %v", ok, err)
	}
	if g := get(); !slices.Contains(g.Admins, dave.String()) {
		t.Errorf("after promoting dave: %+v", g)
	}
	if ok, err := levels(50, 0); !ok || err != nil {
		t.Fatalf("demote: %v %v", ok, err)
	}
	if g := get(); slices.Contains(g.Admins, dave.String()) {
		t.Errorf("after demoting dave: %+v", g)
	}

	// Renaming sets the subject; a name over 100 characters is refused in words.
	rename := func(name string) (bool, error) {
		return ic.HandleMatrixRoomName(ctx, &bridgev2.MatrixRoomName{MatrixEventBase: bridgev2.MatrixEventBase[*event.RoomNameEventContent]{
			Content: &event.RoomNameEventContent{Name: name}, Portal: portal}})
	}
	if ok, err := rename("Hiking club 2027"); !ok || err != nil {
		t.Fatalf("rename: %v %v", ok, err)
	}
	if g := get(); g.Subject != "Hiking club 2027" || portal.Name != "Hiking club 2027" {
		t.Errorf("after renaming: %+v, portal name %q", g, portal.Name)
	}
	ok, err := rename(strings.Repeat("x", 101))
	refusedFor(err)
	if ok {
		t.Error("a 101-character name was taken")
	}
	wantNotice("a long name", "101 characters", "at most 100")
	if g := get(); g.Subject != "Hiking club 2027" {
		t.Errorf("after a refused rename: %+v", g)
	}

	// The topic becomes the description.
	if ok, err := ic.HandleMatrixRoomTopic(ctx, &bridgev2.MatrixRoomTopic{MatrixEventBase: bridgev2.MatrixEventBase[*event.TopicEventContent]{
		Content: &event.TopicEventContent{Topic: "Every other Sunday"}, Portal: portal}}); !ok || err != nil {
		t.Fatalf("topic: %v %v", ok, err)
	}
	if g := get(); g.Description != "Every other Sunday" {
		t.Errorf("after the topic: %+v", g)
	}

	// The Matrix user leaving the room leaves the group; a send afterwards is refused
	// as not being a member.
	if err := membership(bridgev2.Leave, sb.br.GetCachedUserLoginByID(loginID)); err != nil {
		t.Fatal(err)
	}
	if g := get(); !sameMembers(g.Members, dave) {
		t.Errorf("after leaving: %+v", g)
	}
	err = ic.requireGroupMember(ctx, group)
	refusedFor(err)
	if !errors.Is(err, errNotGroupMember) {
		t.Errorf("send after leaving: %v", err)
	}
	bot.take()
	ok, err = rename("Our club")
	refusedFor(err)
	if ok {
		t.Error("a login not in the group renamed it")
	}
	wantNotice("renaming after leaving", "login (+49 170 1234567) is not a member of this group", "cannot change the group")
	if g := get(); g.Subject != "Hiking club 2027" {
		t.Errorf("renamed by a non-member: %+v", g)
	}
	// Leaving again (the room, when the group was already left elsewhere) is no error.
	if err := membership(bridgev2.Leave, sb.br.GetCachedUserLoginByID(loginID)); err != nil {
		t.Errorf("leaving twice: %v", err)
	}
	if notices := bot.take(); len(notices) != 0 {
		t.Errorf("leaving twice: notices %q", notices)
	}
}

// sameMembers says whether members are exactly want, in any order.
func sameMembers(members []string, want ...jid.JID) bool {
	if len(members) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.Contains(members, w.ToUser().String()) {
			return false
		}
	}
	return true
}

// Another Matrix user of the bridge, met in a group as their own interop account, is
// mentioned by that account, and their account's mention becomes their Matrix user.
func TestMentionsOfOtherBridgeUsers(t *testing.T) {
	ctx := context.Background()
	sb := startSimBridge(t, sqltest.SQLite(t))
	sb.br.Matrix = namingMatrix{sb.mx}
	login := func(mxid id.UserID, number string) *InteropClient {
		t.Helper()
		user, err := sb.br.GetUserByMXID(ctx, mxid)
		if err != nil {
			t.Fatal(err)
		}
		proc, _ := sb.c.CreateLogin(ctx, user, LoginFlowIDPhoneNumber)
		if _, err := proc.(bridgev2.LoginProcessUserInput).SubmitUserInput(ctx, map[string]string{"network": "whatsapp", "phone_number": "+" + number}); err != nil {
			t.Fatal(err)
		}
		loginID := ids.MakeUserLoginID(ids.WhatsApp, jid.Interop(simtest.IntegratorID, number))
		return sb.br.GetCachedUserLoginByID(loginID).Client.(*InteropClient)
	}
	alice := login("@alice:test.invalid", "491701234567")
	bob := login("@bob:test.invalid", "491705550005")
	r := mentionResolver{alice}
	if j, ok := r.JIDForMXID(ctx, "@bob:test.invalid"); !ok || j != bob.Account {
		t.Errorf("bob's mention: %s %v, want %s", j, ok, bob.Account)
	}
	if j, ok := r.JIDForMXID(ctx, "@nobody:test.invalid"); ok {
		t.Errorf("a user without login was mentioned as %s", j)
	}
	if userID, _, ok := r.GhostOrUserForJID(ctx, bob.Account); !ok || userID != "@bob:test.invalid" {
		t.Errorf("bob's account is %s %v, want his Matrix user", userID, ok)
	}
}
