package connector

import (
	"maps"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

var (
	testGroup  = jid.MustParse("120363012345678901@g.us")
	groupAlice = jid.MustParse("491701111111@s.whatsapp.net")
	groupBob   = jid.MustParse("491702222222@s.whatsapp.net")
	groupCarol = jid.MustParse("491703333333@s.whatsapp.net")
	otherProv  = jid.MustParse("55-441234567@interop") // another provider's user
)

func roles(info *interop.GroupInfo) map[jid.JID]string {
	out := map[jid.JID]string{}
	for _, p := range info.Participants {
		out[p.JID] = p.Role
	}
	return out
}

// The cache follows every kind of change, without touching the version handed out
// before.
func TestGroupCacheApply(t *testing.T) {
	start := &interop.GroupInfo{JID: testGroup, Subject: "Team", Participants: []interop.GroupParticipant{
		{JID: groupAlice, Role: interop.GroupRoleSuperAdmin}, {JID: groupBob}}}
	for _, tc := range []struct {
		name    string
		change  interop.GroupChange
		members map[jid.JID]string
		subject string
	}{
		{"add", interop.GroupChange{Action: "add", Participants: []interop.GroupParticipant{{JID: groupCarol}, {JID: groupBob}}},
			map[jid.JID]string{groupAlice: "superadmin", groupBob: "", groupCarol: ""}, "Team"},
		{"remove", interop.GroupChange{Action: "remove", Participants: []interop.GroupParticipant{{JID: groupBob}}},
			map[jid.JID]string{groupAlice: "superadmin"}, "Team"},
		{"leave", interop.GroupChange{Action: "leave", Actor: jid.New(groupBob.User, groupBob.Server)},
			map[jid.JID]string{groupAlice: "superadmin"}, "Team"},
		{"promote", interop.GroupChange{Action: "promote", Participants: []interop.GroupParticipant{{JID: groupBob}}},
			map[jid.JID]string{groupAlice: "superadmin", groupBob: "admin"}, "Team"},
		{"subject", interop.GroupChange{Action: "subject", Subject: "Renamed", Actor: groupBob, Time: time.Unix(1700000000, 0)},
			map[jid.JID]string{groupAlice: "superadmin", groupBob: ""}, "Renamed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c groupCache
			c.put(start)
			tc.change.Group = testGroup
			c.apply(&tc.change)
			got, _ := c.get(testGroup)
			if r := roles(got); len(r) != len(tc.members) || !maps.Equal(r, tc.members) || got.Subject != tc.subject {
				t.Errorf("after %s: members %v subject %q, want %v %q", tc.name, r, got.Subject, tc.members, tc.subject)
			}
			if len(start.Participants) != 2 || start.Subject != "Team" {
				t.Errorf("the change altered the info handed out before: %+v", start)
			}
		})
	}
	var c groupCache
	c.apply(&interop.GroupChange{Group: testGroup, Action: "add", Participants: []interop.GroupParticipant{{JID: groupCarol}}})
	if _, ok := c.get(testGroup); ok {
		t.Error("a change of a group never asked for filled the cache with a partial member list")
	}
}

// Members are this login's user (no ghost), Meta users and other providers' users as
// ghosts, with admins' power levels; the chat info names the subject and topic.
func TestGroupChatInfo(t *testing.T) {
	ic := testClient(t)
	info := &interop.GroupInfo{JID: testGroup, Subject: "Team", Description: "About", Participants: []interop.GroupParticipant{
		{JID: ic.Account, Role: interop.GroupRoleSuperAdmin}, {JID: groupAlice, Role: interop.GroupRoleAdmin},
		{JID: groupBob}, {JID: otherProv}}}
	ci := ic.groupChatInfo(info)
	if *ci.Name != "Team" || *ci.Topic != "About" || !ci.Members.IsFull || len(ci.Members.MemberMap) != 4 {
		t.Fatalf("chat info %+v", ci)
	}
	for _, tc := range []struct {
		user     jid.JID
		fromMe   bool
		sender   string
		power    int
		noGhost  bool
		loginSet bool
	}{
		{ic.Account, true, "", groupSuperAdminPowerLevel, true, true},
		{groupAlice, false, groupAlice.String(), groupAdminPowerLevel, false, false},
		{groupBob, false, groupBob.String(), 0, false, false},
		{otherProv, false, otherProv.String(), 0, false, false},
	} {
		m, ok := ci.Members.MemberMap[idsUser(tc.user)]
		if !ok {
			t.Errorf("%s missing from %v", tc.user, slices.Collect(maps.Keys(ci.Members.MemberMap)))
			continue
		}
		if m.IsFromMe != tc.fromMe || string(m.Sender) != tc.sender || *m.PowerLevel != tc.power ||
			(m.SenderLogin != "") != tc.loginSet || m.Membership != event.MembershipJoin {
			t.Errorf("%s: %+v", tc.user, m)
		}
	}
	if ci.Members.PowerLevels == nil || *ci.Members.PowerLevels.Invite != groupAdminPowerLevel ||
		ci.Members.PowerLevels.Events[event.StateRoomName] != 0 {
		t.Errorf("power levels %+v", ci.Members.PowerLevels)
	}
}

// Each notification becomes the matching Matrix change.
func TestGroupChange(t *testing.T) {
	ic := testClient(t)
	leave := ic.groupChange(&interop.GroupChange{Group: testGroup, Action: "leave", Actor: jid.MustParse("491702222222:3@s.whatsapp.net")})
	if m, ok := leave.MemberChanges.MemberMap[idsUser(groupBob)]; !ok || m.Membership != event.MembershipLeave || m.PowerLevel != nil {
		t.Errorf("leave: %+v", leave.MemberChanges)
	}
	promote := ic.groupChange(&interop.GroupChange{Group: testGroup, Action: "promote", Participants: []interop.GroupParticipant{{JID: groupAlice}}})
	if m := promote.MemberChanges.MemberMap[idsUser(groupAlice)]; m.Membership != event.MembershipJoin || *m.PowerLevel != groupAdminPowerLevel {
		t.Errorf("promote: %+v", m)
	}
	subject := ic.groupChange(&interop.GroupChange{Group: testGroup, Action: "subject", Subject: "New"})
	if subject.ChatInfo == nil || *subject.ChatInfo.Name != "New" || subject.MemberChanges != nil {
		t.Errorf("subject: %+v", subject)
	}
	add := ic.groupChange(&interop.GroupChange{Group: testGroup, Action: "add", Participants: []interop.GroupParticipant{{JID: ic.Account}}})
	if m := add.MemberChanges.MemberMap[idsUser(ic.Account)]; !m.IsFromMe || m.Membership != event.MembershipJoin {
		t.Errorf("add of this login: %+v", m)
	}
}

func idsUser(u jid.JID) networkid.UserID { return ids.MakeUserID(u.ToUser()) }
