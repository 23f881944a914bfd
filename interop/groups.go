package interop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// Group roles as the gateway names them in <participant type>; a plain member has none.
const (
	GroupRoleMember     = ""
	GroupRoleAdmin      = "admin"
	GroupRoleSuperAdmin = "superadmin"
)

// GroupAction is a change of a group's members (PROTOCOL.md section 6).
type GroupAction string

const (
	GroupAdd     GroupAction = "add"
	GroupRemove  GroupAction = "remove"
	GroupPromote GroupAction = "promote"
	GroupDemote  GroupAction = "demote"
)

// MaxGroupSubjectLength is the longest subject the gateway takes, in characters.
const MaxGroupSubjectLength = 100

// GroupParticipant is one member of a group answer or notification. Error is the
// per-participant refusal of a change (403: the user has not opted in to every
// member's service; 404 unknown; 406 the group is full; 409 already a member), 0 when
// it applied.
type GroupParticipant struct {
	JID   jid.JID `json:"jid"`
	Role  string  `json:"role,omitempty"`
	Error int     `json:"error,omitempty"`
}

// IsAdmin says whether the participant is an admin or the superadmin.
func (p GroupParticipant) IsAdmin() bool {
	return p.Role == GroupRoleAdmin || p.Role == GroupRoleSuperAdmin
}

// GroupInfo is a group as the gateway describes it.
type GroupInfo struct {
	JID           jid.JID            `json:"jid"`
	Creator       jid.JID            `json:"creator"`
	Subject       string             `json:"subject"`
	SubjectOwner  jid.JID            `json:"subject_owner"`
	SubjectTime   time.Time          `json:"subject_time"`
	Description   string             `json:"description,omitempty"`
	DescriptionID string             `json:"description_id,omitempty"`
	CreatedAt     time.Time          `json:"created_at"`
	Participants  []GroupParticipant `json:"participants"`
}

// Members lists the participants' user JIDs (for SendGroupMessage).
func (g *GroupInfo) Members() []jid.JID {
	out := make([]jid.JID, 0, len(g.Participants))
	for _, p := range g.Participants {
		out = append(out, p.JID)
	}
	return out
}

// ErrMalformedGroup is wrapped when a group answer or notification cannot be read.
var ErrMalformedGroup = errors.New("malformed group stanza")

func groupIQ(typ, to string, child stanza.Node) stanza.Node {
	return stanza.Node{Tag: "iq", Attrs: stanza.Attrs{"type": typ, "xmlns": "w:g2", "to": to},
		Content: []stanza.Node{child}}
}

func participantNodes(users []jid.JID) []stanza.Node {
	out := make([]stanza.Node, 0, len(users))
	for _, u := range users {
		out = append(out, stanza.Node{Tag: "participant", Attrs: stanza.Attrs{"jid": u.ToUser().String()}})
	}
	return out
}

// ParseGroupParticipants reads <participant jid [type] [error]/> nodes.
func ParseGroupParticipants(nodes []stanza.Node) ([]GroupParticipant, error) {
	out := make([]GroupParticipant, 0, len(nodes))
	for _, p := range nodes {
		j, err := jid.Parse(p.Attr("jid"))
		if err != nil || j.User == "" || j.IsGroup() {
			return nil, fmt.Errorf("%w: participant %q is not a user", ErrMalformedGroup, p.Attr("jid"))
		}
		gp := GroupParticipant{JID: j.ToUser(), Role: p.Attr("type")}
		if e := p.Attr("error"); e != "" {
			if gp.Error, err = strconv.Atoi(e); err != nil {
				return nil, fmt.Errorf("%w: participant error %q", ErrMalformedGroup, e)
			}
		}
		out = append(out, gp)
	}
	return out, nil
}

// ParseGroupNode reads <group id creator subject s_t s_o creation>…</group>.
// Participants carrying an error (refused when the group was created) are returned
// apart, in refused.
func ParseGroupNode(g stanza.Node) (info *GroupInfo, refused []GroupParticipant, err error) {
	if g.Tag != "group" || g.Attr("id") == "" {
		return nil, nil, fmt.Errorf("%w: no <group id>", ErrMalformedGroup)
	}
	info = &GroupInfo{JID: jid.New(g.Attr("id"), jid.ServerGroup), Subject: g.Attr("subject")}
	for attr, into := range map[string]*jid.JID{"creator": &info.Creator, "s_o": &info.SubjectOwner} {
		if v := g.Attr(attr); v != "" {
			if *into, err = jid.Parse(v); err != nil {
				return nil, nil, fmt.Errorf("%w: %s %q", ErrMalformedGroup, attr, v)
			}
		}
	}
	if t, err := g.AttrInt("creation"); err == nil {
		info.CreatedAt = time.Unix(t, 0)
	}
	if t, err := g.AttrInt("s_t"); err == nil {
		info.SubjectTime = time.Unix(t, 0)
	}
	if desc, ok := g.Child("description"); ok {
		body, _ := desc.Child("body")
		info.Description, info.DescriptionID = body.Text(), desc.Attr("id")
	}
	all, err := ParseGroupParticipants(g.ChildrenByTag("participant"))
	if err != nil {
		return nil, nil, err
	}
	for _, p := range all {
		if p.Error != 0 {
			refused = append(refused, p)
		} else {
			info.Participants = append(info.Participants, p)
		}
	}
	return info, refused, nil
}

func parseGroupAnswer(answer stanza.Node) (*GroupInfo, []GroupParticipant, error) {
	g, ok := answer.Child("group")
	if !ok {
		return nil, nil, fmt.Errorf("%w: answer has no <group>", ErrMalformedGroup)
	}
	return ParseGroupNode(g)
}

// CreateGroup creates a group with this account as superadmin and the given users as
// members. Users who may not join come back in refused with their Error; the rest are
// in the group.
func (c *Client) CreateGroup(ctx context.Context, subject string, participants []jid.JID) (*GroupInfo, []GroupParticipant, error) {
	answer, err := c.SendIQ(ctx, groupIQ("set", jid.ServerGroup, stanza.Node{Tag: "create",
		Attrs: stanza.Attrs{"subject": subject, "key": NewID()}, Content: participantNodes(participants)}))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create group: %w", err)
	}
	return parseGroupAnswer(answer)
}

// GetGroupInfo asks the gateway for a group this account is a member of.
func (c *Client) GetGroupInfo(ctx context.Context, group jid.JID) (*GroupInfo, error) {
	answer, err := c.SendIQ(ctx, groupIQ("get", group.String(), stanza.Node{Tag: "query", Attrs: stanza.Attrs{"request": "interactive"}}))
	if err != nil {
		return nil, fmt.Errorf("failed to get group info of %s: %w", group, err)
	}
	info, _, err := parseGroupAnswer(answer)
	return info, err
}

// ChangeGroupParticipants adds, removes, promotes or demotes users (admins only); each
// comes back with its own result (Error 0 when it applied).
func (c *Client) ChangeGroupParticipants(ctx context.Context, group jid.JID, action GroupAction, users []jid.JID) ([]GroupParticipant, error) {
	switch action {
	case GroupAdd, GroupRemove, GroupPromote, GroupDemote:
	default:
		return nil, fmt.Errorf("unknown group action %q", action)
	}
	if len(users) == 0 {
		return nil, nil
	}
	answer, err := c.SendIQ(ctx, groupIQ("set", group.String(), stanza.Node{Tag: string(action), Content: participantNodes(users)}))
	if err != nil {
		return nil, fmt.Errorf("failed to %s group participants: %w", action, err)
	}
	res, ok := answer.Child(string(action))
	if !ok {
		return nil, fmt.Errorf("%w: %s answer has no <%s>", ErrMalformedGroup, action, action)
	}
	return ParseGroupParticipants(res.ChildrenByTag("participant"))
}

// SetGroupSubject changes the group's name; any member may.
func (c *Client) SetGroupSubject(ctx context.Context, group jid.JID, subject string) error {
	if _, err := c.SendIQ(ctx, groupIQ("set", group.String(), stanza.Node{Tag: "subject", Content: subject})); err != nil {
		return fmt.Errorf("failed to set group subject: %w", err)
	}
	return nil
}

// SetGroupDescription sets the group's description; "" clears it.
func (c *Client) SetGroupDescription(ctx context.Context, group jid.JID, text string) error {
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return err
	}
	desc := stanza.Node{Tag: "description", Attrs: stanza.Attrs{"id": hex.EncodeToString(idb[:])}}
	if text == "" {
		desc.Attrs["delete"] = "true"
	} else {
		desc.Content = []stanza.Node{{Tag: "body", Content: text}}
	}
	if _, err := c.SendIQ(ctx, groupIQ("set", group.String(), desc)); err != nil {
		return fmt.Errorf("failed to set group description: %w", err)
	}
	return nil
}

// LeaveGroup takes this account out of a group.
func (c *Client) LeaveGroup(ctx context.Context, group jid.JID) error {
	if _, err := c.SendIQ(ctx, groupIQ("set", group.String(), stanza.Node{Tag: "leave"})); err != nil {
		return fmt.Errorf("failed to leave group: %w", err)
	}
	return nil
}

// GroupChange is a <notification type="w:gp2">: a change of a group, announced to
// every member (the removed ones included). Action is the element's tag: create,
// add, remove, promote, demote, subject, description or leave; Actor is who did it
// (for leave, who left).
type GroupChange struct {
	Group        jid.JID
	Actor        jid.JID
	Time         time.Time
	Action       string
	Participants []GroupParticipant
	Subject      string
	Description  string
	// Info is the whole group, for create.
	Info *GroupInfo
}

func (*GroupChange) isNotificationInfo() {}

// Left lists the users no longer in the group after this change: the removed
// participants, or the actor who left.
func (gc *GroupChange) Left() []jid.JID {
	switch gc.Action {
	case "leave":
		return []jid.JID{gc.Actor.ToUser()}
	case "remove":
		out := make([]jid.JID, 0, len(gc.Participants))
		for _, p := range gc.Participants {
			out = append(out, p.JID)
		}
		return out
	}
	return nil
}

func parseGroupNotification(n stanza.Node) (NotificationInfo, error) {
	group, err := jid.Parse(n.Attr("from"))
	if err != nil || !group.IsGroup() || group.User == "" {
		return nil, fmt.Errorf("%w: notification from %q is not a group", ErrMalformedGroup, n.Attr("from"))
	}
	children := n.Children()
	if len(children) != 1 {
		return nil, fmt.Errorf("%w: a group notification holds one change, got %d", ErrMalformedGroup, len(children))
	}
	gc := &GroupChange{Group: group, Action: children[0].Tag}
	if a := n.Attr("participant"); a != "" {
		if gc.Actor, err = jid.Parse(a); err != nil {
			return nil, fmt.Errorf("%w: actor %q", ErrMalformedGroup, a)
		}
	}
	if t, err := n.AttrInt("t"); err == nil {
		gc.Time = time.Unix(t, 0)
	}
	ch := children[0]
	switch ch.Tag {
	case "create":
		g, ok := ch.Child("group")
		if !ok {
			return nil, fmt.Errorf("%w: create without <group>", ErrMalformedGroup)
		}
		if gc.Info, _, err = ParseGroupNode(g); err != nil {
			return nil, err
		}
		gc.Info.JID = group
		gc.Subject, gc.Participants = gc.Info.Subject, gc.Info.Participants
	case "add", "remove", "promote", "demote":
		if gc.Participants, err = ParseGroupParticipants(ch.ChildrenByTag("participant")); err != nil {
			return nil, err
		}
		if len(gc.Participants) == 0 {
			return nil, fmt.Errorf("%w: %s without participants", ErrMalformedGroup, ch.Tag)
		}
	case "subject":
		gc.Subject = ch.Text()
	case "description":
		body, _ := ch.Child("body")
		gc.Description = body.Text()
	case "leave":
		if gc.Actor.User == "" {
			return nil, fmt.Errorf("%w: leave without participant", ErrMalformedGroup)
		}
	default:
		return nil, fmt.Errorf("%w: unknown group change <%s>", ErrMalformedGroup, ch.Tag)
	}
	return gc, nil
}

// ChangeGroupParticipants is Client.ChangeGroupParticipants; after a removal that
// applied, this account starts a new sender key for its next message to the group
// (the gateway does not announce our own change back to this device).
func (a *Account) ChangeGroupParticipants(ctx context.Context, group jid.JID, action GroupAction, users []jid.JID) ([]GroupParticipant, error) {
	results, err := a.client.ChangeGroupParticipants(ctx, group, action, users)
	if err != nil || action != GroupRemove {
		return results, err
	}
	for _, r := range results {
		if r.Error == 0 {
			if err := a.ResetGroupSenderKey(ctx, group); err != nil {
				return results, fmt.Errorf("failed to start a new sender key after the removal: %w", err)
			}
			break
		}
	}
	return results, nil
}

// LeaveGroup is Client.LeaveGroup, and forgets this account's sender key for the
// group, so that a later return starts a fresh one.
func (a *Account) LeaveGroup(ctx context.Context, group jid.JID) error {
	if err := a.client.LeaveGroup(ctx, group); err != nil {
		return err
	}
	if err := a.ResetGroupSenderKey(ctx, group); err != nil {
		return fmt.Errorf("failed to forget the sender key after leaving: %w", err)
	}
	return nil
}
