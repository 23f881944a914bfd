package connector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"go.mau.fi/util/ptr"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/networkid"
	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/connector/ids"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

var (
	_ bridgev2.GroupCreatingNetworkAPI      = (*InteropClient)(nil)
	_ bridgev2.MembershipHandlingNetworkAPI = (*InteropClient)(nil)
	_ bridgev2.RoomNameHandlingNetworkAPI   = (*InteropClient)(nil)
	_ bridgev2.RoomTopicHandlingNetworkAPI  = (*InteropClient)(nil)
	_ bridgev2.PowerLevelHandlingNetworkAPI = (*InteropClient)(nil)
)

// Limits of a group the gateway enforces (PROTOCOL.md section 6, metasim's checks),
// checked here too so the Matrix user learns of them before anything is sent.
const (
	// GroupTypeDefault is the one group type the provisioning API and create-group know.
	GroupTypeDefault = "group"
	// maxGroupMembers counts the creator.
	maxGroupMembers        = 256
	maxGroupDescriptionLen = 2048
)

// groupNoticeTimeout bounds the wait for a new group's room before the notice of who
// was not added is given up (the provisioning answer lists them anyway).
const groupNoticeTimeout = 30 * time.Second

// errNotGroupMember is wrapped when a Matrix user whose login is not in a group acts in
// its portal (bridgev2 picks any of their logins when none is in the portal).
var errNotGroupMember = errors.New("this login is not a member of the group")

// groupCreationCapabilities is what the provisioning API and the create-group command
// advertise and check before CreateGroup runs: a name of at most 100 characters (the
// gateway's limit; bridgev2 counts bytes, so a long non-ASCII name is refused by
// CreateGroup itself), an optional topic, and 1 to 255 members besides the creator.
func groupCreationCapabilities() map[string]bridgev2.GroupTypeCapabilities {
	return map[string]bridgev2.GroupTypeCapabilities{
		GroupTypeDefault: {
			TypeDescription: "a WhatsApp or Messenger group",
			Name:            bridgev2.GroupFieldCapability{Allowed: true, Required: true, MinLength: 1, MaxLength: interop.MaxGroupSubjectLength},
			Topic:           bridgev2.GroupFieldCapability{Allowed: true, MaxLength: maxGroupDescriptionLen},
			Participants:    bridgev2.GroupFieldCapability{Allowed: true, Required: true, MinLength: 1, MaxLength: maxGroupMembers - 1},
		},
	}
}

// groupRefusal is the reason a participant could not be added, as the Matrix user
// reads it: who is the person's name or number.
func groupRefusal(code int, who, network string) string {
	switch code {
	case 403:
		return fmt.Sprintf("%s has not turned on third-party chats for this service on %s, so they cannot be added", who, network)
	case 404:
		return fmt.Sprintf("%s is not a %s user", who, network)
	case 406:
		return fmt.Sprintf("%s cannot be added: the group is full (%d members at most)", who, maxGroupMembers)
	case 409:
		return fmt.Sprintf("%s is already in the group", who)
	}
	return fmt.Sprintf("Meta's gateway refused to add %s (%d)", who, code)
}

// checkGroupSubject refuses a name the gateway would refuse, with the reason.
func checkGroupSubject(name string) error {
	switch n := utf8.RuneCountInString(name); {
	case strings.TrimSpace(name) == "":
		return errors.New("a WhatsApp or Messenger group must have a name")
	case n > interop.MaxGroupSubjectLength:
		return fmt.Errorf("the group name has %d characters; WhatsApp and Messenger allow at most %d", n, interop.MaxGroupSubjectLength)
	}
	return nil
}

// groupMemberJID is the interop address of whom a Matrix membership or power level
// change is about: a ghost's Meta user (or other provider's user), or the account of
// another of this bridge's logins on the same network.
func (ic *InteropClient) groupMemberJID(target bridgev2.GhostOrUserLogin) (jid.JID, error) {
	switch t := target.(type) {
	case *bridgev2.Ghost:
		user, err := ids.ParseUserID(t.ID)
		if err != nil {
			return jid.JID{}, err
		}
		if network, ok := ids.NetworkOfUser(user); ok && network != ic.Network {
			return jid.JID{}, fmt.Errorf("%s is on %s, not %s", user, network, ic.Network)
		}
		return user, nil
	case *bridgev2.UserLogin:
		network, account, err := ids.ParseUserLoginID(t.ID)
		if err != nil {
			return jid.JID{}, err
		}
		if network != ic.Network {
			return jid.JID{}, fmt.Errorf("login %s is on %s, not %s", t.ID, network, ic.Network)
		}
		return account, nil
	}
	return jid.JID{}, fmt.Errorf("unknown member target %T", target)
}

// memberName is how a notice names a group member: the ghost's name, else the number.
func (ic *InteropClient) memberName(ctx context.Context, user jid.JID) string {
	if ic.Main != nil && ic.Main.Bridge != nil {
		return ic.contactName(ctx, user)
	}
	if user.Server == jid.ServerInterop {
		return user.String()
	}
	return ids.FormatPhoneNumber(user.User)
}

// groupOf is the group of a group portal; ok is false for 1:1 portals.
func groupOf(portal *bridgev2.Portal) (jid.JID, bool) {
	if portal == nil {
		return jid.JID{}, false
	}
	chat, err := ids.ParsePortalID(portal.ID)
	if err != nil || !chat.IsGroup() {
		return jid.JID{}, false
	}
	return chat, true
}

// groupRefuse is a certain failure of a Matrix action in a group portal; the notice
// is sent by noticeRefusal, worded for the action rather than as a failed message.
func groupRefuse(err error, reason event.MessageStatusReason) error {
	return bridgev2.WrapErrorInStatus(err).WithIsCertain(true).WithSendNotice(false).
		WithStatus(event.MessageStatusFail).WithErrorReason(reason)
}

// notice tells the portal's room something went wrong with a Matrix user's action;
// the bot says it, since the action was theirs and no ghost did anything.
func (ic *InteropClient) notice(ctx context.Context, portal *bridgev2.Portal, text string) {
	if portal == nil || portal.MXID == "" || ic.Main == nil || ic.Main.Bridge == nil || ic.Main.Bridge.Bot == nil {
		return
	}
	content := &event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgNotice, Body: text}}
	if _, err := ic.Main.Bridge.Bot.SendMessage(ctx, portal.MXID, event.EventMessage, content, nil); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to send a group notice")
	}
}

// gatewayRefusal words an iq refusal of a group change.
func (ic *InteropClient) gatewayRefusal(err error, what string) string {
	switch {
	case errors.Is(err, ErrNotConnected):
		return fmt.Sprintf("Could not %s: this login is not connected to Meta's gateway", what)
	case errors.Is(err, errcode.ErrForbidden):
		return fmt.Sprintf("Could not %s: only group admins may do that on %s", what, networkDisplayName(ic.Main, ic.Network))
	case errors.Is(err, errcode.ErrNotFound):
		return fmt.Sprintf("Could not %s: you are not in this group any more", what)
	case errors.Is(err, errcode.ErrMalformed):
		return fmt.Sprintf("Could not %s: %s refused the change", what, networkDisplayName(ic.Main, ic.Network))
	}
	return fmt.Sprintf("Could not %s: Meta's gateway did not answer; try again later", what)
}

// CreateGroup creates a group from Matrix (the create-group command in a room, or
// provisioning's create_group): the login's account becomes its superadmin, the
// participants its members. Participants who may not join come back in
// FailedParticipants and in a notice in the room; the others are in the group.
func (ic *InteropClient) CreateGroup(ctx context.Context, params *bridgev2.GroupCreateParams) (*bridgev2.CreateChatResponse, error) {
	log := zerolog.Ctx(ctx)
	subject := ptr.Val(params.Name).Name
	if err := checkGroupSubject(subject); err != nil {
		return nil, bridgev2.RespError(mautrix.MInvalidParam.WithMessage(err.Error()))
	}
	topic := ptr.Val(params.Topic).Topic
	if utf8.RuneCountInString(topic) > maxGroupDescriptionLen {
		return nil, bridgev2.RespError(mautrix.MInvalidParam.WithMessage("The topic is longer than %d characters", maxGroupDescriptionLen))
	}
	acc := ic.account()
	if acc == nil || !ic.IsLoggedIn() {
		return nil, bridgev2.RespError(mautrix.MForbidden.WithMessage("This login is not connected to Meta's gateway; sign in again"))
	}
	network := networkDisplayName(ic.Main, ic.Network)
	failed := make(map[networkid.UserID]*bridgev2.CreateChatFailedParticipant)
	var users []jid.JID
	for _, p := range params.Participants {
		user, err := ids.ParseUserID(p)
		if err != nil {
			failed[p] = &bridgev2.CreateChatFailedParticipant{Reason: fmt.Sprintf("%s is not a WhatsApp or Messenger user", p)}
			continue
		}
		if n, ok := ids.NetworkOfUser(user); ok && n != ic.Network {
			failed[p] = &bridgev2.CreateChatFailedParticipant{Reason: fmt.Sprintf("%s is on %s; a %s group holds only %s users and third-party accounts",
				ic.memberName(ctx, user), networkDisplayName(ic.Main, n), network, network)}
			continue
		}
		users = append(users, user)
	}
	if len(users) == 0 {
		return nil, bridgev2.RespError(mautrix.MInvalidParam.WithMessage("None of the participants can be in a %s group", network))
	}
	info, refused, err := acc.Client().CreateGroup(ctx, subject, users)
	if err != nil {
		log.Err(err).Msg("Failed to create a group")
		return nil, bridgev2.RespError(mautrix.MUnknown.WithMessage(ic.gatewayRefusal(err, "create the group")))
	}
	log.Info().Stringer("group", info.JID).Int("members", len(info.Participants)).Int("refused", len(refused)).Msg("Created a group from Matrix")
	for _, r := range refused {
		failed[ids.MakeUserID(r.JID)] = &bridgev2.CreateChatFailedParticipant{Reason: groupRefusal(r.Error, ic.memberName(ctx, r.JID), network)}
	}
	if topic != "" {
		if err := acc.Client().SetGroupDescription(ctx, info.JID, topic); err != nil {
			log.Warn().Err(err).Msg("Failed to set the new group's description")
		} else {
			info.Description = topic
		}
	}
	ic.groups.put(info)
	resp := &bridgev2.CreateChatResponse{
		PortalKey:          ids.MakePortalKey(info.JID, ic.UserLogin.ID),
		PortalInfo:         ic.groupChatInfo(info),
		FailedParticipants: failed,
	}
	if ic.Main == nil || ic.Main.Bridge == nil {
		return resp, nil
	}
	portal, err := ic.Main.Bridge.GetPortalByKey(ctx, resp.PortalKey)
	if err != nil {
		return nil, fmt.Errorf("failed to get the new group's portal: %w", err)
	}
	resp.Portal = portal
	if params.RoomID != "" {
		err = portal.UpdateMatrixRoomID(ctx, params.RoomID, bridgev2.UpdateMatrixRoomIDParams{
			SyncDBMetadata: func() {
				portal.Name, portal.NameSet = info.Subject, true
				portal.Topic, portal.TopicSet = info.Description, true
			},
			OverwriteOldPortal: true,
			ChatInfo:           resp.PortalInfo,
			ChatInfoSource:     ic.UserLogin,
		})
		if err != nil {
			return nil, fmt.Errorf("failed to bridge the room to the new group: %w", err)
		}
	}
	if len(failed) > 0 {
		// The room exists only once bridgev2 made it, after this returns.
		go ic.noticeFailedParticipants(context.WithoutCancel(ctx), portal, failed)
	}
	return resp, nil
}

// noticeFailedParticipants tells the new group's room who is not in it and why.
func (ic *InteropClient) noticeFailedParticipants(ctx context.Context, portal *bridgev2.Portal, failed map[networkid.UserID]*bridgev2.CreateChatFailedParticipant) {
	select {
	case <-portal.RoomCreated.GetChan():
	case <-time.After(groupNoticeTimeout):
		zerolog.Ctx(ctx).Warn().Msg("The new group's room was not created in time for the notice of refused participants")
		return
	}
	lines := make([]string, 0, len(failed))
	for _, f := range failed {
		lines = append(lines, "• "+f.Reason)
	}
	slices.Sort(lines)
	ic.notice(ctx, portal, "Not added to the group:\n"+strings.Join(lines, "\n"))
}

// membershipAction is the group change a Matrix membership change asks for: add for
// an invite, remove for a kick or ban of a member, leave for the user's own leave.
// ok is false for changes that have nothing to do on Meta's side (joins, profile
// changes, revoked invites: the invite is undone when the add failed).
func membershipAction(t bridgev2.MembershipChangeType) (action interop.GroupAction, leave, ok bool) {
	switch t {
	case bridgev2.Invite:
		return interop.GroupAdd, false, true
	case bridgev2.Kick, bridgev2.BanJoined:
		return interop.GroupRemove, false, true
	case bridgev2.Leave:
		return "", true, true
	}
	return "", false, false
}

// HandleMatrixMembership changes the group's members as the Matrix room's did:
// inviting a ghost adds its Meta user (and makes the ghost join), kicking removes,
// the user leaving the room leaves the group. A participant the gateway refuses is
// named in a notice and the invite is undone.
func (ic *InteropClient) HandleMatrixMembership(ctx context.Context, msg *bridgev2.MatrixMembershipChange) (*bridgev2.MatrixMembershipResult, error) {
	group, isGroup := groupOf(msg.Portal)
	action, leave, ok := membershipAction(msg.Type)
	if !ok {
		return nil, nil
	}
	if !isGroup {
		if msg.Type == bridgev2.Invite {
			err := errors.New("a direct chat cannot have more members")
			ic.undoInvite(ctx, msg, "A direct chat with a WhatsApp or Messenger user cannot have more members; create a group instead")
			return nil, groupRefuse(err, event.MessageStatusUnsupported)
		}
		return nil, nil
	}
	if msg.OrigSender != nil {
		if leave {
			// A user without a login leaving: they were never in the group on Meta's side.
			return nil, nil
		}
		err := errors.New("relayed users cannot change a group's members")
		ic.notice(ctx, msg.Portal, "Only users logged in to the bridge can change the group's members")
		return nil, groupRefuse(err, event.MessageStatusNoPermission)
	}
	acc := ic.account()
	if acc == nil || !ic.IsLoggedIn() {
		ic.notice(ctx, msg.Portal, ic.gatewayRefusal(ErrNotConnected, "change the group's members"))
		return nil, groupRefuse(ErrNotConnected, event.MessageStatusGenericError)
	}
	if leave {
		if login, ok := msg.Target.(*bridgev2.UserLogin); ok && login.ID != ic.UserLogin.ID {
			// Another of the user's logins: it leaves through its own connection.
			if other, ok := clientOf(login); ok {
				return other.HandleMatrixMembership(ctx, msg)
			}
		}
		err := acc.LeaveGroup(ctx, group)
		if errors.Is(err, errcode.ErrForbidden) || errors.Is(err, errcode.ErrNotFound) {
			// Not in the group (any more): the user's login was never a member, or left
			// on another device; the room is left either way.
			ic.groups.forget(group)
			return nil, nil
		}
		if err != nil {
			zerolog.Ctx(ctx).Err(err).Stringer("group", group).Msg("Failed to leave the group")
			ic.notice(ctx, msg.Portal, ic.gatewayRefusal(err, "leave the group"))
			return nil, groupRefuse(err, event.MessageStatusGenericError)
		}
		ic.groups.forget(group)
		zerolog.Ctx(ctx).Info().Stringer("group", group).Msg("Left the group from Matrix")
		return nil, nil
	}
	if err := ic.refuseNonMember(ctx, msg.Portal, group); err != nil {
		if action == interop.GroupAdd {
			ic.undoInvite(ctx, msg, "")
		}
		return nil, err
	}
	user, err := ic.groupMemberJID(msg.Target)
	if err != nil {
		if action == interop.GroupAdd {
			ic.undoInvite(ctx, msg, fmt.Sprintf("This person cannot be in a %s group", networkDisplayName(ic.Main, ic.Network)))
		}
		return nil, groupRefuse(err, event.MessageStatusUnsupported)
	}
	what := map[interop.GroupAction]string{interop.GroupAdd: "add", interop.GroupRemove: "remove"}[action]
	results, err := acc.ChangeGroupParticipants(ctx, group, action, []jid.JID{user})
	if err != nil {
		zerolog.Ctx(ctx).Err(err).Stringer("group", group).Str("action", string(action)).Msg("Failed to change the group's members")
		text := ic.gatewayRefusal(err, fmt.Sprintf("%s %s", what, ic.memberName(ctx, user)))
		if action == interop.GroupAdd {
			ic.undoInvite(ctx, msg, text)
		} else {
			ic.notice(ctx, msg.Portal, text)
		}
		return nil, groupRefuse(err, event.MessageStatusGenericError)
	}
	for _, r := range results {
		if r.Error == 0 || (action == interop.GroupRemove && r.Error == 404) || (action == interop.GroupAdd && r.Error == 409) {
			continue
		}
		text := groupRefusal(r.Error, ic.memberName(ctx, user), networkDisplayName(ic.Main, ic.Network))
		if action == interop.GroupRemove {
			text = fmt.Sprintf("Could not remove %s: %s refused it (%d)", ic.memberName(ctx, user), networkDisplayName(ic.Main, ic.Network), r.Error)
			ic.notice(ctx, msg.Portal, text)
		} else {
			ic.undoInvite(ctx, msg, text)
		}
		return nil, groupRefuse(fmt.Errorf("%s refused with %d", action, r.Error), event.MessageStatusNoPermission)
	}
	ic.groups.apply(&interop.GroupChange{Group: group, Actor: ic.Account, Action: string(action),
		Participants: []interop.GroupParticipant{{JID: user}}})
	if action == interop.GroupAdd {
		ic.joinInvited(ctx, msg)
	}
	return nil, nil
}

// joinInvited makes an invited ghost join once its user is in the group: the gateway
// does not announce our own change back to this login.
func (ic *InteropClient) joinInvited(ctx context.Context, msg *bridgev2.MatrixMembershipChange) {
	ghost, ok := msg.Target.(*bridgev2.Ghost)
	if !ok || ghost.Intent == nil || msg.Portal.MXID == "" {
		return
	}
	if err := ghost.Intent.EnsureJoined(ctx, msg.Portal.MXID); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to make the added member's ghost join")
	}
}

// undoInvite takes back a Matrix invite that did not become a member, with a notice
// saying why (none when it was already said): the ghost rejects it, so the room shows
// who is really in the group.
func (ic *InteropClient) undoInvite(ctx context.Context, msg *bridgev2.MatrixMembershipChange, why string) {
	if why != "" {
		ic.notice(ctx, msg.Portal, why)
	}
	ghost, ok := msg.Target.(*bridgev2.Ghost)
	if !ok || ghost.Intent == nil || msg.Portal == nil || msg.Portal.MXID == "" {
		return
	}
	content := &event.Content{Parsed: &event.MemberEventContent{Membership: event.MembershipLeave, Reason: why}}
	if _, err := ghost.Intent.SendState(ctx, msg.Portal.MXID, event.StateMember, ghost.Intent.GetMXID().String(), content, time.Time{}); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to undo the invite")
	}
}

// powerLevelAction is the group change a member's new power level asks for: reaching
// the admin level promotes, falling below it demotes.
func powerLevelAction(orig, level int) (interop.GroupAction, bool) {
	switch {
	case orig < groupAdminPowerLevel && level >= groupAdminPowerLevel:
		return interop.GroupPromote, true
	case orig >= groupAdminPowerLevel && level < groupAdminPowerLevel:
		return interop.GroupDemote, true
	}
	return "", false
}

// HandleMatrixPowerLevels promotes members raised to the admin level (50) and demotes
// those lowered below it. Other power level changes stay Matrix-only.
func (ic *InteropClient) HandleMatrixPowerLevels(ctx context.Context, msg *bridgev2.MatrixPowerLevelChange) (bool, error) {
	group, isGroup := groupOf(msg.Portal)
	if !isGroup || len(msg.Users) == 0 {
		return false, nil
	}
	changes := map[interop.GroupAction][]jid.JID{}
	for userID, change := range msg.Users {
		action, ok := powerLevelAction(change.OrigLevel, change.NewLevel)
		if !ok || change.Target == nil {
			continue
		}
		user, err := ic.groupMemberJID(change.Target)
		if err != nil {
			zerolog.Ctx(ctx).Debug().Err(err).Stringer("user_id", userID).Msg("Not bridging a power level change")
			continue
		}
		changes[action] = append(changes[action], user)
	}
	if len(changes) == 0 {
		return false, nil
	}
	if msg.OrigSender != nil {
		ic.notice(ctx, msg.Portal, "Only users logged in to the bridge can make members admins")
		return false, groupRefuse(errors.New("relayed users cannot promote"), event.MessageStatusNoPermission)
	}
	acc := ic.account()
	if acc == nil || !ic.IsLoggedIn() {
		ic.notice(ctx, msg.Portal, ic.gatewayRefusal(ErrNotConnected, "change who is an admin"))
		return false, groupRefuse(ErrNotConnected, event.MessageStatusGenericError)
	}
	if err := ic.refuseNonMember(ctx, msg.Portal, group); err != nil {
		return false, err
	}
	var refusals []string
	for _, action := range []interop.GroupAction{interop.GroupPromote, interop.GroupDemote} {
		users := changes[action]
		if len(users) == 0 {
			continue
		}
		what := map[interop.GroupAction]string{interop.GroupPromote: "make %s an admin", interop.GroupDemote: "make %s a plain member"}[action]
		results, err := acc.ChangeGroupParticipants(ctx, group, action, users)
		if err != nil {
			refusals = append(refusals, ic.gatewayRefusal(err, fmt.Sprintf(what, ic.memberName(ctx, users[0]))))
			continue
		}
		var applied []interop.GroupParticipant
		for _, r := range results {
			switch r.Error {
			case 0:
				applied = append(applied, interop.GroupParticipant{JID: r.JID})
			case 403:
				refusals = append(refusals, fmt.Sprintf("Could not "+what+": the group's creator keeps their role", ic.memberName(ctx, r.JID)))
			case 404:
				refusals = append(refusals, fmt.Sprintf("Could not "+what+": they are not in the group", ic.memberName(ctx, r.JID)))
			default:
				refusals = append(refusals, fmt.Sprintf("Could not "+what+" (%d)", ic.memberName(ctx, r.JID), r.Error))
			}
		}
		if len(applied) > 0 {
			ic.groups.apply(&interop.GroupChange{Group: group, Actor: ic.Account, Action: string(action), Participants: applied})
		}
	}
	if len(refusals) > 0 {
		ic.notice(ctx, msg.Portal, strings.Join(refusals, "\n"))
		return false, groupRefuse(errors.New(strings.Join(refusals, "; ")), event.MessageStatusNoPermission)
	}
	return true, nil
}

// HandleMatrixRoomName sets the group's subject; a name the gateway would refuse
// (empty, over 100 characters) is refused with the reason.
func (ic *InteropClient) HandleMatrixRoomName(ctx context.Context, msg *bridgev2.MatrixRoomName) (bool, error) {
	group, isGroup := groupOf(msg.Portal)
	if !isGroup {
		return false, nil
	}
	name := msg.Content.Name
	if err := checkGroupSubject(name); err != nil {
		ic.notice(ctx, msg.Portal, fmt.Sprintf("The name was not changed on %s: %s", networkDisplayName(ic.Main, ic.Network), err))
		return false, groupRefuse(err, event.MessageStatusUnsupported)
	}
	acc := ic.account()
	if acc == nil || !ic.IsLoggedIn() {
		ic.notice(ctx, msg.Portal, ic.gatewayRefusal(ErrNotConnected, "rename the group"))
		return false, groupRefuse(ErrNotConnected, event.MessageStatusGenericError)
	}
	if err := ic.refuseNonMember(ctx, msg.Portal, group); err != nil {
		return false, err
	}
	if err := acc.Client().SetGroupSubject(ctx, group, name); err != nil {
		ic.notice(ctx, msg.Portal, ic.gatewayRefusal(err, "rename the group"))
		return false, groupRefuse(err, event.MessageStatusGenericError)
	}
	ic.groups.apply(&interop.GroupChange{Group: group, Actor: ic.Account, Action: "subject", Subject: name, Time: time.Now()})
	msg.Portal.Name, msg.Portal.NameSet = name, true
	return true, nil
}

// HandleMatrixRoomTopic sets the group's description; an empty topic clears it.
func (ic *InteropClient) HandleMatrixRoomTopic(ctx context.Context, msg *bridgev2.MatrixRoomTopic) (bool, error) {
	group, isGroup := groupOf(msg.Portal)
	if !isGroup {
		return false, nil
	}
	topic := msg.Content.Topic
	if n := utf8.RuneCountInString(topic); n > maxGroupDescriptionLen {
		err := fmt.Errorf("the topic has %d characters; WhatsApp and Messenger allow at most %d", n, maxGroupDescriptionLen)
		ic.notice(ctx, msg.Portal, fmt.Sprintf("The description was not changed on %s: %s", networkDisplayName(ic.Main, ic.Network), err))
		return false, groupRefuse(err, event.MessageStatusUnsupported)
	}
	acc := ic.account()
	if acc == nil || !ic.IsLoggedIn() {
		ic.notice(ctx, msg.Portal, ic.gatewayRefusal(ErrNotConnected, "change the group's description"))
		return false, groupRefuse(ErrNotConnected, event.MessageStatusGenericError)
	}
	if err := ic.refuseNonMember(ctx, msg.Portal, group); err != nil {
		return false, err
	}
	if err := acc.Client().SetGroupDescription(ctx, group, topic); err != nil {
		ic.notice(ctx, msg.Portal, ic.gatewayRefusal(err, "change the group's description"))
		return false, groupRefuse(err, event.MessageStatusGenericError)
	}
	ic.groups.apply(&interop.GroupChange{Group: group, Actor: ic.Account, Action: "description", Description: topic})
	msg.Portal.Topic, msg.Portal.TopicSet = topic, true
	return true, nil
}

// requireGroupMember refuses a send to a group this login is not in, which happens
// when a Matrix user whose own login is not in the group writes in its portal
// (bridgev2 then picks one of their logins anyway).
func (ic *InteropClient) requireGroupMember(ctx context.Context, group jid.JID) error {
	info, err := ic.groupInfo(ctx, group, false)
	if err == nil {
		for _, p := range info.Participants {
			if p.JID.ToUser() == ic.Account.ToUser() {
				return nil
			}
		}
	} else if !errors.Is(err, errcode.ErrForbidden) && !errors.Is(err, errcode.ErrNotFound) {
		// Not knowing is no reason to refuse: the send finds out.
		return nil
	}
	number := ids.FormatPhoneNumber(ic.Account.Number())
	return bridgev2.WrapErrorInStatus(fmt.Errorf("%w: %s", errNotGroupMember, group)).WithIsCertain(true).WithSendNotice(true).
		WithStatus(event.MessageStatusFail).WithErrorReason(event.MessageStatusNoPermission).
		WithMessage(fmt.Sprintf("Your %s login (%s) is not a member of this group, so it cannot send here; ask an admin to add it",
			networkDisplayName(ic.Main, ic.Network), number))
}

// refuseNonMember tells the room, and returns the refusal, when this login is not in
// the group it is asked to change: the gateway would only say "forbidden", which reads
// as if the user were not an admin.
func (ic *InteropClient) refuseNonMember(ctx context.Context, portal *bridgev2.Portal, group jid.JID) error {
	err := ic.requireGroupMember(ctx, group)
	if err == nil {
		return nil
	}
	if ms, ok := errors.AsType[bridgev2.MessageStatus](err); ok {
		ic.notice(ctx, portal, strings.Replace(ms.Message, "so it cannot send here", "so it cannot change the group", 1))
	}
	return err
}
