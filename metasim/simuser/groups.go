package simuser

import (
	"context"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// GroupAction is a membership change of section 6.
type GroupAction = interop.GroupAction

const (
	GroupAdd     = interop.GroupAdd
	GroupRemove  = interop.GroupRemove
	GroupPromote = interop.GroupPromote
	GroupDemote  = interop.GroupDemote
)

// GroupParticipant is one member in a group answer; Error is the per-participant
// refusal code of a change (403 not opted in, 404 unknown, …), 0 when applied.
type GroupParticipant = interop.GroupParticipant

// GroupInfo is a group as the gateway answers it.
type GroupInfo = interop.GroupInfo

// CreateGroup creates a group with actor's user as superadmin. Participants who may
// not join come back with Error set.
func (m *Manager) CreateGroup(ctx context.Context, actor jid.JID, subject string, participants []jid.JID) (*GroupInfo, error) {
	d, err := m.device(actor)
	if err != nil {
		return nil, err
	}
	info, refused, err := d.acc.Client().CreateGroup(ctx, subject, participants)
	if err != nil {
		return nil, err
	}
	// The control API answers the refused participants with the members, each with
	// its error.
	info.Participants = append(info.Participants, refused...)
	return info, nil
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
	return d.acc.Client().GetGroupInfo(ctx, group)
}

// groupMembers lists the users of a group, for a group send.
func (d *device) groupMembers(ctx context.Context, group jid.JID) ([]jid.JID, error) {
	info, err := d.groupInfo(ctx, group)
	if err != nil {
		return nil, err
	}
	return info.Members(), nil
}

// ChangeParticipants adds, removes, promotes or demotes users; each comes back with
// its own result. After a removal the actor starts a new sender key (section 6).
func (m *Manager) ChangeParticipants(ctx context.Context, actor, group jid.JID, action GroupAction, users []jid.JID) ([]GroupParticipant, error) {
	d, err := m.device(actor)
	if err != nil {
		return nil, err
	}
	return d.acc.ChangeGroupParticipants(ctx, group, action, users)
}

// SetGroupSubject changes the subject; any member may.
func (m *Manager) SetGroupSubject(ctx context.Context, actor, group jid.JID, subject string) error {
	d, err := m.device(actor)
	if err != nil {
		return err
	}
	return d.acc.Client().SetGroupSubject(ctx, group, subject)
}

// SetGroupDescription sets the description; "" clears it.
func (m *Manager) SetGroupDescription(ctx context.Context, actor, group jid.JID, text string) error {
	d, err := m.device(actor)
	if err != nil {
		return err
	}
	return d.acc.Client().SetGroupDescription(ctx, group, text)
}

// LeaveGroup makes actor's user leave a group.
func (m *Manager) LeaveGroup(ctx context.Context, actor, group jid.JID) error {
	d, err := m.device(actor)
	if err != nil {
		return err
	}
	return d.acc.LeaveGroup(ctx, group)
}
