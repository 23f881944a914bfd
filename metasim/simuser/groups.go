package simuser

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// GroupAction is a membership change of section 6.
type GroupAction string

const (
	GroupAdd     GroupAction = "add"
	GroupRemove  GroupAction = "remove"
	GroupPromote GroupAction = "promote"
	GroupDemote  GroupAction = "demote"
)

// GroupParticipant is one member in a group answer; Error is the per-participant
// refusal code of a change (403 not opted in, 404 unknown, …), 0 when applied.
type GroupParticipant struct {
	JID   jid.JID `json:"jid"`
	Role  string  `json:"role,omitempty"` // "", admin or superadmin
	Error int     `json:"error,omitempty"`
}

// GroupInfo is a group as the gateway answers it.
type GroupInfo struct {
	JID          jid.JID            `json:"jid"`
	Creator      jid.JID            `json:"creator"`
	Subject      string             `json:"subject"`
	Description  string             `json:"description,omitempty"`
	CreatedAt    time.Time          `json:"created_at"`
	Participants []GroupParticipant `json:"participants"`
}

// groupIQ sends one w:g2 iq through the device's connection.
func (d *device) groupIQ(ctx context.Context, typ, to string, child stanza.Node) (stanza.Node, error) {
	answer, err := d.acc.Client().SendIQ(ctx, stanza.Node{Tag: "iq",
		Attrs: stanza.Attrs{"type": typ, "xmlns": "w:g2", "to": to}, Content: []stanza.Node{child}})
	if err != nil {
		return stanza.Node{}, fmt.Errorf("group %s refused: %w", child.Tag, err)
	}
	return answer, nil
}

func participantNodes(users []jid.JID) []stanza.Node {
	out := make([]stanza.Node, 0, len(users))
	for _, u := range users {
		out = append(out, stanza.Node{Tag: "participant", Attrs: stanza.Attrs{"jid": u.ToUser().String()}})
	}
	return out
}

func parseParticipants(nodes []stanza.Node) ([]GroupParticipant, error) {
	out := make([]GroupParticipant, 0, len(nodes))
	for _, p := range nodes {
		j, err := jid.Parse(p.Attr("jid"))
		if err != nil {
			return nil, fmt.Errorf("malformed group participant: %w", err)
		}
		gp := GroupParticipant{JID: j, Role: p.Attr("type")}
		if e := p.Attr("error"); e != "" {
			if gp.Error, err = strconv.Atoi(e); err != nil {
				return nil, fmt.Errorf("malformed participant error %q", e)
			}
		}
		out = append(out, gp)
	}
	return out, nil
}

// parseGroup reads <group id creator subject creation>…</group>.
func parseGroup(answer stanza.Node) (*GroupInfo, error) {
	g, ok := answer.Child("group")
	if !ok {
		return nil, fmt.Errorf("group answer has no <group>")
	}
	info := &GroupInfo{JID: jid.New(g.Attr("id"), jid.ServerGroup), Subject: g.Attr("subject")}
	if g.Attr("id") == "" {
		return nil, fmt.Errorf("group answer has no id")
	}
	if c := g.Attr("creator"); c != "" {
		var err error
		if info.Creator, err = jid.Parse(c); err != nil {
			return nil, fmt.Errorf("malformed group creator: %w", err)
		}
	}
	if t, err := g.AttrInt("creation"); err == nil {
		info.CreatedAt = time.Unix(t, 0)
	}
	if desc, ok := g.Child("description"); ok {
		body, _ := desc.Child("body")
		info.Description = body.Text()
	}
	var err error
	info.Participants, err = parseParticipants(g.ChildrenByTag("participant"))
	return info, err
}

// CreateGroup creates a group with actor's user as superadmin. Participants who may
// not join come back with Error set.
func (m *Manager) CreateGroup(ctx context.Context, actor jid.JID, subject string, participants []jid.JID) (*GroupInfo, error) {
	d, err := m.device(actor)
	if err != nil {
		return nil, err
	}
	answer, err := d.groupIQ(ctx, "set", jid.ServerGroup, stanza.Node{Tag: "create",
		Attrs: stanza.Attrs{"subject": subject, "key": interop.NewID()}, Content: participantNodes(participants)})
	if err != nil {
		return nil, err
	}
	return parseGroup(answer)
}

// GroupInfo asks the gateway for a group as actor sees it.
func (m *Manager) GroupInfo(ctx context.Context, actor, group jid.JID) (*GroupInfo, error) {
	d, err := m.device(actor)
	if err != nil {
		return nil, err
	}
	return d.groupInfo(ctx, group)
}

func (d *device) groupInfo(ctx context.Context, group jid.JID) (*GroupInfo, error) {
	answer, err := d.groupIQ(ctx, "get", group.String(), stanza.Node{Tag: "query", Attrs: stanza.Attrs{"request": "interactive"}})
	if err != nil {
		return nil, err
	}
	return parseGroup(answer)
}

// groupMembers lists the users of a group, for a group send.
func (d *device) groupMembers(ctx context.Context, group jid.JID) ([]jid.JID, error) {
	info, err := d.groupInfo(ctx, group)
	if err != nil {
		return nil, err
	}
	members := make([]jid.JID, 0, len(info.Participants))
	for _, p := range info.Participants {
		members = append(members, p.JID)
	}
	return members, nil
}

// ChangeParticipants adds, removes, promotes or demotes users; each comes back with
// its own result. After a removal the actor starts a new sender key (section 6).
func (m *Manager) ChangeParticipants(ctx context.Context, actor, group jid.JID, action GroupAction, users []jid.JID) ([]GroupParticipant, error) {
	d, err := m.device(actor)
	if err != nil {
		return nil, err
	}
	switch action {
	case GroupAdd, GroupRemove, GroupPromote, GroupDemote:
	default:
		return nil, fmt.Errorf("unknown group action %q", action)
	}
	answer, err := d.groupIQ(ctx, "set", group.String(), stanza.Node{Tag: string(action), Content: participantNodes(users)})
	if err != nil {
		return nil, err
	}
	res, _ := answer.Child(string(action))
	results, err := parseParticipants(res.ChildrenByTag("participant"))
	if err != nil {
		return nil, err
	}
	if action == GroupRemove {
		if err := d.acc.ResetGroupSenderKey(ctx, group); err != nil {
			return results, fmt.Errorf("failed to start a new sender key: %w", err)
		}
	}
	return results, nil
}

// SetGroupSubject changes the subject; any member may.
func (m *Manager) SetGroupSubject(ctx context.Context, actor, group jid.JID, subject string) error {
	d, err := m.device(actor)
	if err != nil {
		return err
	}
	_, err = d.groupIQ(ctx, "set", group.String(), stanza.Node{Tag: "subject", Content: subject})
	return err
}

// SetGroupDescription sets the description; "" clears it.
func (m *Manager) SetGroupDescription(ctx context.Context, actor, group jid.JID, text string) error {
	d, err := m.device(actor)
	if err != nil {
		return err
	}
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
	_, err = d.groupIQ(ctx, "set", group.String(), desc)
	return err
}

// LeaveGroup makes actor's user leave a group.
func (m *Manager) LeaveGroup(ctx context.Context, actor, group jid.JID) error {
	d, err := m.device(actor)
	if err != nil {
		return err
	}
	if _, err := d.groupIQ(ctx, "set", group.String(), stanza.Node{Tag: "leave"}); err != nil {
		return err
	}
	return d.acc.ResetGroupSenderKey(ctx, group)
}
