package gwstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Group roles.
const (
	RoleMember     = ""
	RoleAdmin      = "admin"
	RoleSuperAdmin = "superadmin"
)

// Group is a group and its members.
type Group struct {
	JID           jid.JID
	Creator       jid.JID
	Subject       string
	SubjectOwner  jid.JID
	SubjectTime   time.Time
	Description   string
	DescriptionID string
	CreatedAt     time.Time
	Members       []Member // in join order
}

// Member is one member of a group.
type Member struct {
	User jid.JID
	Role string
}

// IsAdmin reports whether the role may change the group's membership.
func (m Member) IsAdmin() bool { return m.Role == RoleAdmin || m.Role == RoleSuperAdmin }

// Member returns the member entry of a user.
func (g *Group) Member(user jid.JID) (Member, bool) {
	user = user.ToUser()
	for _, m := range g.Members {
		if m.User == user {
			return m, true
		}
	}
	return Member{}, false
}

// CreateGroup stores a new group with its members.
func (s *Store) CreateGroup(ctx context.Context, g Group) error {
	return s.DoTxn(ctx, func(ctx context.Context) error {
		_, err := s.db.Exec(ctx, `
			INSERT INTO metasim_group (network, jid, creator, subject, subject_owner, subject_t, description, description_id, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			s.network, g.JID.String(), g.Creator.String(), g.Subject, g.SubjectOwner.String(), ms(g.SubjectTime),
			g.Description, g.DescriptionID, ms(g.CreatedAt))
		if err != nil {
			return fmt.Errorf("failed to create group: %w", err)
		}
		for _, m := range g.Members {
			if err := s.AddMember(ctx, g.JID, m, g.CreatedAt); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetGroup returns a group with its members, or ErrNotFound.
func (s *Store) GetGroup(ctx context.Context, group jid.JID) (*Group, error) {
	var g Group
	var creator, owner string
	var subjectT, created int64
	err := s.db.QueryRow(ctx, `
		SELECT creator, subject, subject_owner, subject_t, description, description_id, created_at
		FROM metasim_group WHERE network=$1 AND jid=$2`, s.network, group.String()).
		Scan(&creator, &g.Subject, &owner, &subjectT, &g.Description, &g.DescriptionID, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, fmt.Errorf("failed to get group: %w", err)
	}
	g.JID, g.SubjectTime, g.CreatedAt = group, fromMS(subjectT), fromMS(created)
	if g.Creator, err = parseJID(creator); err != nil {
		return nil, err
	}
	if g.SubjectOwner, err = parseJID(owner); err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT user_jid, role FROM metasim_group_member WHERE network=$1 AND group_jid=$2
		ORDER BY joined_at, user_jid`, s.network, group.String())
	if err != nil {
		return nil, fmt.Errorf("failed to get members: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var raw string
		var m Member
		if err := rows.Scan(&raw, &m.Role); err != nil {
			return nil, fmt.Errorf("failed to get members: %w", err)
		}
		if m.User, err = parseJID(raw); err != nil {
			return nil, err
		}
		g.Members = append(g.Members, m)
	}
	return &g, rows.Err()
}

// ListGroups returns the JIDs of every group.
func (s *Store) ListGroups(ctx context.Context) ([]jid.JID, error) {
	out, err := s.queryJIDs(ctx, `SELECT jid FROM metasim_group WHERE network=$1 ORDER BY created_at, jid`, s.network)
	if err != nil {
		return nil, fmt.Errorf("failed to list groups: %w", err)
	}
	return out, nil
}

// AddMember adds a user to a group (or changes its role if it is already there).
func (s *Store) AddMember(ctx context.Context, group jid.JID, m Member, now time.Time) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO metasim_group_member (network, group_jid, user_jid, role, joined_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (network, group_jid, user_jid) DO UPDATE SET role=excluded.role`,
		s.network, group.String(), m.User.ToUser().String(), m.Role, ms(now))
	if err != nil {
		return fmt.Errorf("failed to add member: %w", err)
	}
	return nil
}

// RemoveMember removes a user from a group.
func (s *Store) RemoveMember(ctx context.Context, group, user jid.JID) error {
	_, err := s.db.Exec(ctx, `DELETE FROM metasim_group_member WHERE network=$1 AND group_jid=$2 AND user_jid=$3`,
		s.network, group.String(), user.ToUser().String())
	if err != nil {
		return fmt.Errorf("failed to remove member: %w", err)
	}
	return nil
}

// SetRole changes a member's role.
func (s *Store) SetRole(ctx context.Context, group, user jid.JID, role string) error {
	_, err := s.db.Exec(ctx, `UPDATE metasim_group_member SET role=$4 WHERE network=$1 AND group_jid=$2 AND user_jid=$3`,
		s.network, group.String(), user.ToUser().String(), role)
	if err != nil {
		return fmt.Errorf("failed to set role: %w", err)
	}
	return nil
}

// SetSubject changes a group's subject.
func (s *Store) SetSubject(ctx context.Context, group jid.JID, subject string, owner jid.JID, at time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE metasim_group SET subject=$3, subject_owner=$4, subject_t=$5 WHERE network=$1 AND jid=$2`,
		s.network, group.String(), subject, owner.ToUser().String(), ms(at))
	if err != nil {
		return fmt.Errorf("failed to set subject: %w", err)
	}
	return nil
}

// SetDescription changes a group's description.
func (s *Store) SetDescription(ctx context.Context, group jid.JID, description, id string) error {
	_, err := s.db.Exec(ctx, `UPDATE metasim_group SET description=$3, description_id=$4 WHERE network=$1 AND jid=$2`,
		s.network, group.String(), description, id)
	if err != nil {
		return fmt.Errorf("failed to set description: %w", err)
	}
	return nil
}

// CoMembers lists the users sharing at least one group with user (user excluded).
func (s *Store) CoMembers(ctx context.Context, user jid.JID) ([]jid.JID, error) {
	out, err := s.queryJIDs(ctx, `
		SELECT DISTINCT o.user_jid FROM metasim_group_member m
		JOIN metasim_group_member o ON o.network=m.network AND o.group_jid=m.group_jid
		WHERE m.network=$1 AND m.user_jid=$2 AND o.user_jid<>$2`, s.network, user.ToUser().String())
	if err != nil {
		return nil, fmt.Errorf("failed to list co-members: %w", err)
	}
	jid.Sort(out)
	return out, nil
}
