package connector

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/ptr"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/bridgev2/simplevent"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/waproto/waE2E"
)

// Power levels of group roles in the portal: admins may add and remove members
// (PROTOCOL.md section 6); anyone may change the subject and description.
const (
	groupAdminPowerLevel      = 50
	groupSuperAdminPowerLevel = 75
)

// groupCache keeps what the gateway said about the login's groups, kept current by the
// w:gp2 notifications, so that a group send does not ask for the members every time.
type groupCache struct {
	mu    sync.Mutex
	infos map[jid.JID]*interop.GroupInfo
}

func (c *groupCache) get(group jid.JID) (*interop.GroupInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, ok := c.infos[group]
	return info, ok
}

func (c *groupCache) put(info *interop.GroupInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.infos == nil {
		c.infos = make(map[jid.JID]*interop.GroupInfo)
	}
	c.infos[info.JID] = info
}

func (c *groupCache) forget(group jid.JID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.infos, group)
}

// apply brings a cached group up to date with a change; a group not cached stays so
// (it is asked for when needed).
func (c *groupCache) apply(gc *interop.GroupChange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gc.Action == "create" && gc.Info != nil {
		if c.infos == nil {
			c.infos = make(map[jid.JID]*interop.GroupInfo)
		}
		c.infos[gc.Group] = gc.Info
		return
	}
	cached, ok := c.infos[gc.Group]
	if !ok {
		return
	}
	info := *cached
	info.Participants = slices.Clone(cached.Participants)
	switch gc.Action {
	case "add":
		for _, p := range gc.Participants {
			if !slices.ContainsFunc(info.Participants, func(q interop.GroupParticipant) bool { return q.JID == p.JID }) {
				info.Participants = append(info.Participants, interop.GroupParticipant{JID: p.JID})
			}
		}
	case "remove", "leave":
		left := gc.Left()
		info.Participants = slices.DeleteFunc(info.Participants, func(q interop.GroupParticipant) bool {
			return slices.Contains(left, q.JID)
		})
	case "promote", "demote":
		role := interop.GroupRoleAdmin
		if gc.Action == "demote" {
			role = interop.GroupRoleMember
		}
		for i, q := range info.Participants {
			if slices.ContainsFunc(gc.Participants, func(p interop.GroupParticipant) bool { return p.JID == q.JID }) {
				info.Participants[i].Role = role
			}
		}
	case "subject":
		info.Subject, info.SubjectOwner, info.SubjectTime = gc.Subject, gc.Actor.ToUser(), gc.Time
	case "description":
		info.Description = gc.Description
	}
	c.infos[gc.Group] = &info
}

// groupInfo returns the group as the gateway last described it, asking when it is
// not cached or refresh is set.
func (ic *InteropClient) groupInfo(ctx context.Context, group jid.JID, refresh bool) (*interop.GroupInfo, error) {
	if !refresh {
		if info, ok := ic.groups.get(group); ok {
			return info, nil
		}
	}
	acc := ic.account()
	if acc == nil {
		return nil, ErrNotConnected
	}
	info, err := acc.Client().GetGroupInfo(ctx, group)
	if err != nil {
		return nil, err
	}
	ic.groups.put(info)
	return info, nil
}

// ownLogin is the bridge's login of an interop account on this login's network: one
// of this bridge's own users, met in a group.
func (ic *InteropClient) ownLogin(user jid.JID) *bridgev2.UserLogin {
	if ic.Main == nil || ic.Main.Bridge == nil || user.Server != jid.ServerInterop {
		return nil
	}
	return ic.Main.Bridge.GetCachedUserLoginByID(ids.MakeUserLoginID(ic.Network, user.ToUser()))
}

// groupSender is who a group member is in the portal: this login's user, another of the
// bridge's users (their own Matrix account, no ghost: an interop account has no other
// devices whose messages a ghost would carry), or the ghost of a Meta user or of another
// provider's user.
func (ic *InteropClient) groupSender(user jid.JID) bridgev2.EventSender {
	user = user.ToUser()
	if user == ic.Account.ToUser() {
		return bridgev2.EventSender{IsFromMe: true, SenderLogin: ic.UserLogin.ID}
	}
	if login := ic.ownLogin(user); login != nil {
		return bridgev2.EventSender{SenderLogin: login.ID}
	}
	return bridgev2.EventSender{Sender: ids.MakeUserID(user)}
}

func groupPowerLevel(role string) int {
	switch role {
	case interop.GroupRoleSuperAdmin:
		return groupSuperAdminPowerLevel
	case interop.GroupRoleAdmin:
		return groupAdminPowerLevel
	}
	return 0
}

// groupMember is one member's entry in a member list, keyed by its would-be ghost ID
// (unique even for the bridge's own users, who have no Sender).
func (ic *InteropClient) groupMember(p interop.GroupParticipant, membership event.Membership) (networkid.UserID, bridgev2.ChatMember) {
	return ids.MakeUserID(p.JID.ToUser()), bridgev2.ChatMember{
		EventSender: ic.groupSender(p.JID),
		Membership:  membership,
		PowerLevel:  ptr.Ptr(groupPowerLevel(p.Role)),
	}
}

// groupChatInfo is a group portal's info: subject, description, every member with
// their power level.
func (ic *InteropClient) groupChatInfo(info *interop.GroupInfo) *bridgev2.ChatInfo {
	members := make(bridgev2.ChatMemberMap, len(info.Participants))
	for _, p := range info.Participants {
		key, m := ic.groupMember(p, event.MembershipJoin)
		members[key] = m
	}
	ci := &bridgev2.ChatInfo{
		Name:  ptr.Ptr(info.Subject),
		Topic: ptr.Ptr(info.Description),
		Type:  ptr.Ptr(database.RoomTypeDefault),
		Members: &bridgev2.ChatMemberList{
			IsFull:    true,
			MemberMap: members,
			PowerLevels: &bridgev2.PowerLevelOverrides{
				EventsDefault: ptr.Ptr(0),
				Invite:        ptr.Ptr(groupAdminPowerLevel),
				Kick:          ptr.Ptr(groupAdminPowerLevel),
				Events: map[event.Type]int{
					event.StateRoomName: 0,
					event.StateTopic:    0,
				},
			},
		},
	}
	return ci
}

// handleGroupNotification bridges a w:gp2 change as the matching Matrix state change
// by its actor, and acks it once bridgev2 took it. A group the login is added to (or
// created with it) becomes a portal.
func (ic *InteropClient) handleGroupNotification(ctx context.Context, e *interop.IncomingNotification) {
	log := zerolog.Ctx(ctx)
	gc, ok := e.Info.(*interop.GroupChange)
	if !ok {
		log.Warn().AnErr("parse_error", e.Err).Msg("Acking a malformed group notification")
		ic.ack(ctx, e.Node)
		return
	}
	ic.groups.apply(gc)
	me := ic.Account.ToUser()
	includesMe := slices.ContainsFunc(gc.Participants, func(p interop.GroupParticipant) bool { return p.JID == me })
	ts := gc.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	evt := &simplevent.ChatInfoChange{
		EventMeta: simplevent.EventMeta{
			Type:         bridgev2.RemoteEventChatInfoChange,
			PortalKey:    ids.MakePortalKey(gc.Group, ic.UserLogin.ID),
			Sender:       ic.groupSender(gc.Actor),
			Timestamp:    ts,
			CreatePortal: gc.Action == "create" || (gc.Action == "add" && includesMe),
		},
		ChatInfoChange: ic.groupChange(gc),
	}
	if (gc.Action == "remove" && includesMe) || (gc.Action == "leave" && gc.Actor.ToUser() == me) {
		ic.groups.forget(gc.Group)
	}
	res := ic.queueRemoteEvent(evt)
	if !res.Success {
		log.Warn().Err(res.Error).Str("action", gc.Action).Stringer("group", gc.Group).
			Msg("Failed to bridge a group change; the gateway delivers it again")
		return
	}
	ic.ack(ctx, e.Node)
}

// groupChange is the Matrix side of one group change.
func (ic *InteropClient) groupChange(gc *interop.GroupChange) *bridgev2.ChatInfoChange {
	change := &bridgev2.ChatInfoChange{}
	members := func(membership event.Membership, participants []interop.GroupParticipant, role func(interop.GroupParticipant) string) {
		m := make(bridgev2.ChatMemberMap, len(participants))
		for _, p := range participants {
			if role != nil {
				p.Role = role(p)
			}
			key, member := ic.groupMember(p, membership)
			if membership == event.MembershipLeave {
				member.PowerLevel = nil
			}
			m[key] = member
		}
		change.MemberChanges = &bridgev2.ChatMemberList{MemberMap: m}
	}
	switch gc.Action {
	case "create":
		if gc.Info != nil {
			change.ChatInfo = ic.groupChatInfo(gc.Info)
		}
	case "add":
		members(event.MembershipJoin, gc.Participants, nil)
	case "remove":
		members(event.MembershipLeave, gc.Participants, nil)
	case "leave":
		members(event.MembershipLeave, []interop.GroupParticipant{{JID: gc.Actor.ToUser()}}, nil)
	case "promote":
		members(event.MembershipJoin, gc.Participants, func(interop.GroupParticipant) string { return interop.GroupRoleAdmin })
	case "demote":
		members(event.MembershipJoin, gc.Participants, func(interop.GroupParticipant) string { return interop.GroupRoleMember })
	case "subject":
		change.ChatInfo = &bridgev2.ChatInfo{Name: ptr.Ptr(gc.Subject)}
	case "description":
		change.ChatInfo = &bridgev2.ChatInfo{Topic: ptr.Ptr(gc.Description)}
	}
	return change
}

// groupMembers lists a group's members for a send; refresh asks the gateway again.
func (ic *InteropClient) groupMembers(ctx context.Context, group jid.JID, refresh bool) ([]jid.JID, error) {
	info, err := ic.groupInfo(ctx, group, refresh)
	if err != nil {
		return nil, fmt.Errorf("failed to get the members of %s: %w", group, err)
	}
	return info.Members(), nil
}

// sendToGroup sends to every member the cache knows. A send the gateway refuses with
// 409 after the device refreshes (the members changed without a notification reaching
// this login yet) is tried once more with the members asked for again.
func (ic *InteropClient) sendToGroup(ctx context.Context, acc *interop.Account, group jid.JID, id string, msg *waE2E.Message) (interop.SendResult, error) {
	if err := ic.requireGroupMember(ctx, group); err != nil {
		return interop.SendResult{}, err
	}
	members, err := ic.groupMembers(ctx, group, false)
	if err != nil {
		return interop.SendResult{}, err
	}
	res, err := acc.SendGroupMessage(ctx, group, members, id, msg, interop.SendOptions{})
	if errcode.CodeOf(err) != 409 {
		return res, err
	}
	if members, err = ic.groupMembers(ctx, group, true); err != nil {
		return res, err
	}
	return acc.SendGroupMessage(ctx, group, members, id, msg, interop.SendOptions{})
}
