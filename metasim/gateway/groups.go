package gateway

import (
	"context"
	"crypto/rand"
	"math/big"
	"strconv"
	"unicode/utf8"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// Group limits besides the size (Limits.MaxGroupSize).
const (
	maxSubjectLen     = 100
	maxDescriptionLen = 2048
)

// handleGroupIQ serves xmlns="w:g2" (section 6).
func (s *session) handleGroupIQ(ctx context.Context, n stanza.Node) ([]stanza.Node, *iqError) {
	s.g.groupMu.Lock()
	defer s.g.groupMu.Unlock()
	if create, ok := n.Child("create"); ok {
		if n.Attr("type") != "set" {
			return nil, badRequest("create must be a set iq")
		}
		return s.createGroup(ctx, create)
	}
	to, err := jid.Parse(n.Attr("to"))
	if err != nil || !to.IsGroup() || to.User == "" {
		return nil, badRequest("to must be a group")
	}
	group, err := s.g.st.GetGroup(ctx, to)
	if isNotFound(err) {
		return nil, &iqError{code: 404, text: "no such group"}
	} else if err != nil {
		return nil, s.logFailure(err, "look up group")
	}
	me, member := group.Member(s.user())
	if !member {
		return nil, &iqError{code: 403, text: "not a member"}
	}
	if n.Attr("type") == "get" {
		if _, ok := n.Child("query"); !ok {
			return nil, badRequest("expected <query>")
		}
		return []stanza.Node{groupNode(group)}, nil
	}
	children := n.Children()
	if len(children) != 1 {
		return nil, badRequest("a group change holds exactly one element")
	}
	change := children[0]
	switch change.Tag {
	case "add", "remove", "promote", "demote":
		if !me.IsAdmin() {
			return nil, &iqError{code: 403, text: "not an admin"}
		}
		return s.changeMembers(ctx, group, change)
	case "subject":
		return s.changeSubject(ctx, group, change)
	case "description":
		return s.changeDescription(ctx, group, change)
	case "leave":
		if err := s.g.st.RemoveMember(ctx, group.JID, s.user()); err != nil {
			return nil, s.logFailure(err, "leave group")
		}
		s.announceGroup(ctx, group, stanza.Node{Tag: "leave"})
		return nil, nil
	}
	return nil, badRequest("unknown group change")
}

// groupNode is <group id creator subject s_t s_o creation>…</group>. id is the
// group's user part, as WhatsApp sends it.
func groupNode(g *gwstore.Group) stanza.Node {
	children := make([]stanza.Node, 0, len(g.Members)+1)
	for _, m := range g.Members {
		p := stanza.Node{Tag: "participant", Attrs: stanza.Attrs{"jid": m.User.String()}}
		if m.Role != gwstore.RoleMember {
			p.Attrs["type"] = m.Role
		}
		children = append(children, p)
	}
	if g.Description != "" {
		children = append(children, stanza.Node{Tag: "description", Attrs: stanza.Attrs{"id": g.DescriptionID},
			Content: []stanza.Node{{Tag: "body", Content: g.Description}}})
	}
	return stanza.Node{Tag: "group", Attrs: stanza.Attrs{
		"id":       g.JID.User,
		"creator":  g.Creator.String(),
		"subject":  g.Subject,
		"s_t":      strconv.FormatInt(g.SubjectTime.Unix(), 10),
		"s_o":      g.SubjectOwner.String(),
		"creation": strconv.FormatInt(g.CreatedAt.Unix(), 10),
	}, Content: children}
}

// participantJIDs reads the <participant jid/> children of a change.
func participantJIDs(change stanza.Node) ([]jid.JID, *iqError) {
	parts := change.ChildrenByTag("participant")
	out := make([]jid.JID, 0, len(parts))
	seen := map[jid.JID]bool{}
	for _, p := range parts {
		u, err := jid.Parse(p.Attr("jid"))
		if err != nil || u.User == "" || u.IsGroup() {
			return nil, badRequest("participant jid is not a user")
		}
		if u = u.ToUser(); !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out, nil
}

func participantResult(u jid.JID, code int) stanza.Node {
	p := stanza.Node{Tag: "participant", Attrs: stanza.Attrs{"jid": u.String()}}
	if code != 0 {
		p.Attrs["error"] = strconv.Itoa(code)
	}
	return p
}

// admissionError says why a user cannot join a group with these members: 404 unknown,
// 403 not reachable by every member (not opted in to their integrators), 0 when it can.
func (s *session) admissionError(ctx context.Context, u jid.JID, members []jid.JID) (int, error) {
	known, err := s.g.st.KnownUser(ctx, u)
	if err != nil {
		return 0, err
	} else if !known {
		return 404, nil
	}
	for _, m := range members {
		ok, err := s.g.reachable(ctx, u, m)
		if err != nil {
			return 0, err
		} else if !ok {
			return 403, nil
		}
	}
	return 0, nil
}

// createGroup makes a group with the actor as superadmin; participants who may not
// join get a per-participant error instead.
func (s *session) createGroup(ctx context.Context, create stanza.Node) ([]stanza.Node, *iqError) {
	subject := create.Attr("subject")
	if subject == "" || utf8.RuneCountInString(subject) > maxSubjectLen {
		return nil, badRequest("subject must be 1-100 characters")
	}
	wanted, ierr := participantJIDs(create)
	if ierr != nil {
		return nil, ierr
	}
	now := s.g.now()
	id, err := s.newGroupJID(ctx)
	if err != nil {
		return nil, s.logFailure(err, "make group id")
	}
	group := gwstore.Group{JID: id, Creator: s.user(), Subject: subject, SubjectOwner: s.user(), SubjectTime: now,
		CreatedAt: now, Members: []gwstore.Member{{User: s.user(), Role: gwstore.RoleSuperAdmin}}}
	members := []jid.JID{s.user()}
	var refused []stanza.Node
	for _, u := range wanted {
		if u == s.user() {
			continue
		}
		code, err := s.admissionError(ctx, u, members)
		if err != nil {
			return nil, s.logFailure(err, "check participant")
		}
		if code == 0 && len(members) >= s.g.cfg.Limits.MaxGroupSize {
			code = 406
		}
		if code != 0 {
			refused = append(refused, participantResult(u, code))
			continue
		}
		members = append(members, u)
		group.Members = append(group.Members, gwstore.Member{User: u})
	}
	if err := s.g.st.CreateGroup(ctx, group); err != nil {
		return nil, s.logFailure(err, "create group")
	}
	result := groupNode(&group)
	result.Content = append(result.Children(), refused...)
	s.announceGroup(ctx, &group, stanza.Node{Tag: "create", Content: []stanza.Node{groupNode(&group)}})
	return []stanza.Node{result}, nil
}

// newGroupJID picks a fresh id in WhatsApp's style: 120363 and 12 digits.
func (s *session) newGroupJID(ctx context.Context) (jid.JID, error) {
	for {
		n, err := rand.Int(rand.Reader, big.NewInt(1_000_000_000_000))
		if err != nil {
			return jid.JID{}, err
		}
		id := jid.New("120363"+leftPad(n.String(), 12), jid.ServerGroup)
		if _, err := s.g.st.GetGroup(ctx, id); isNotFound(err) {
			return id, nil
		} else if err != nil {
			return jid.JID{}, err
		}
	}
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}

// changeMembers adds, removes, promotes or demotes participants, each with its own
// result; the change is announced with the participants it applied to.
func (s *session) changeMembers(ctx context.Context, group *gwstore.Group, change stanza.Node) ([]stanza.Node, *iqError) {
	users, ierr := participantJIDs(change)
	if ierr != nil {
		return nil, ierr
	}
	if len(users) == 0 {
		return nil, badRequest("no participant")
	}
	now := s.g.now()
	members := make([]jid.JID, 0, len(group.Members))
	for _, m := range group.Members {
		members = append(members, m.User)
	}
	results := make([]stanza.Node, 0, len(users))
	var applied []stanza.Node
	audience := group // removed members still hear about their removal
	for _, u := range users {
		m, isMember := group.Member(u)
		code := 0
		var err error
		switch change.Tag {
		case "add":
			switch {
			case isMember:
				code = 409
			case len(members) >= s.g.cfg.Limits.MaxGroupSize:
				code = 406
			default:
				if code, err = s.admissionError(ctx, u, members); err == nil && code == 0 {
					err = s.g.st.AddMember(ctx, group.JID, gwstore.Member{User: u}, now)
					members = append(members, u)
				}
			}
		case "remove":
			switch {
			case !isMember:
				code = 404
			case m.Role == gwstore.RoleSuperAdmin && u != s.user():
				code = 403
			default:
				err = s.g.st.RemoveMember(ctx, group.JID, u)
			}
		case "promote", "demote":
			role := gwstore.RoleAdmin
			if change.Tag == "demote" {
				role = gwstore.RoleMember
			}
			switch {
			case !isMember:
				code = 404
			case m.Role == gwstore.RoleSuperAdmin:
				code = 403
			default:
				err = s.g.st.SetRole(ctx, group.JID, u, role)
			}
		}
		if err != nil {
			return nil, s.logFailure(err, "change group")
		}
		results = append(results, participantResult(u, code))
		if code == 0 {
			applied = append(applied, participantResult(u, 0))
		}
	}
	if len(applied) > 0 {
		updated, err := s.g.st.GetGroup(ctx, group.JID)
		if err != nil {
			return nil, s.logFailure(err, "reload group")
		}
		if change.Tag == "add" {
			audience = updated
		}
		s.announceGroup(ctx, audience, stanza.Node{Tag: change.Tag, Content: applied})
	}
	return []stanza.Node{{Tag: change.Tag, Content: results}}, nil
}

// changeSubject sets the subject; any member may.
func (s *session) changeSubject(ctx context.Context, group *gwstore.Group, change stanza.Node) ([]stanza.Node, *iqError) {
	subject := change.Text()
	if change.Children() != nil || subject == "" || utf8.RuneCountInString(subject) > maxSubjectLen {
		return nil, badRequest("subject must be 1-100 characters")
	}
	if err := s.g.st.SetSubject(ctx, group.JID, subject, s.user(), s.g.now()); err != nil {
		return nil, s.logFailure(err, "set subject")
	}
	s.announceGroup(ctx, group, stanza.Node{Tag: "subject", Content: subject})
	return nil, nil
}

// changeDescription sets or (with an empty body) clears the description.
func (s *session) changeDescription(ctx context.Context, group *gwstore.Group, change stanza.Node) ([]stanza.Node, *iqError) {
	id := change.Attr("id")
	text := ""
	if body, ok := change.Child("body"); ok {
		text = body.Text()
	} else if change.Attr("delete") != "true" {
		return nil, badRequest("<description> needs a <body>")
	}
	if utf8.RuneCountInString(text) > maxDescriptionLen {
		return nil, badRequest("description longer than 2048 characters")
	}
	if id == "" && text != "" {
		return nil, badRequest("<description> needs an id")
	}
	if err := s.g.st.SetDescription(ctx, group.JID, text, id); err != nil {
		return nil, s.logFailure(err, "set description")
	}
	s.announceGroup(ctx, group, change)
	return nil, nil
}

// announceGroup tells every member of group (as given) about a change by this
// endpoint: <notification type="w:gp2" from={group} participant={actor} t>change
// </notification>. The acting device learned it from the iq answer.
func (s *session) announceGroup(ctx context.Context, group *gwstore.Group, change stanza.Node) {
	users := make([]jid.JID, 0, len(group.Members))
	for _, m := range group.Members {
		users = append(users, m.User)
	}
	n := s.g.notification("w:gp2", group.JID.String(), stanza.Attrs{"participant": s.user().String()}, change)
	s.g.deliverAll(ctx, users, n, s.endpoint)
}
