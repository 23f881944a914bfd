package control

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

// GroupView is a group as a gateway holds it.
type GroupView struct {
	JID         jid.JID   `json:"jid"`
	Network     string    `json:"network"`
	Creator     jid.JID   `json:"creator"`
	Subject     string    `json:"subject"`
	Description string    `json:"description,omitempty"`
	Members     []jid.JID `json:"members"`
	Admins      []jid.JID `json:"admins"`
	CreatedAt   time.Time `json:"created_at"`
}

func groupView(network string, g *gateway.Group) GroupView {
	return GroupView{JID: g.JID, Network: network, Creator: g.Creator, Subject: g.Subject,
		Description: g.Description, Members: nonNil(g.Members), Admins: nonNil(g.Admins), CreatedAt: g.CreatedAt}
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	network := r.URL.Query().Get("network")
	if network != "" && s.cfg.Gateways[network] == nil {
		return errBadRequest("network %q is not enabled", network)
	}
	out := []GroupView{}
	for _, name := range s.networkNames() {
		if network != "" && name != network {
			continue
		}
		gw := s.cfg.Gateways[name]
		ids, err := gw.Groups(r.Context())
		if err != nil {
			return err
		}
		for _, id := range ids {
			g, err := gw.Group(r.Context(), id)
			if err != nil {
				return err
			}
			out = append(out, groupView(name, g))
		}
	}
	return ok(w, map[string]any{"groups": out})
}

// findGroup looks a group up on the named network, or on every network when none is
// named (group ids are unique in practice, and a person with curl should not have to
// know which network made one).
func (s *Server) findGroup(r *http.Request, network string) (*gateway.Gateway, *gateway.Group, error) {
	g, err := parseJID("group jid", r.PathValue("jid"))
	if err != nil {
		return nil, nil, err
	}
	if !g.IsGroup() {
		return nil, nil, errBadRequest("%s is not a group (…@g.us)", g)
	}
	for _, name := range s.networkNames() {
		if network != "" && name != network {
			continue
		}
		gw := s.cfg.Gateways[name]
		group, err := gw.Group(r.Context(), g)
		if errors.Is(err, gateway.ErrUnknownGroup) {
			continue
		} else if err != nil {
			return nil, nil, err
		}
		return gw, group, nil
	}
	return nil, nil, errNotFound("no such group: %s", g)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	gw, g, err := s.findGroup(r, r.URL.Query().Get("network"))
	if err != nil {
		return err
	}
	return ok(w, groupView(gw.Network(), g))
}

// maxParticipants bounds one request's list (the protocol's groups hold 256).
const maxParticipants = 256

type createGroupRequest struct {
	Actor        string   `json:"actor"`
	Subject      string   `json:"subject"`
	Participants []string `json:"participants"`
}

// parseJIDs reads a list of user JIDs.
func parseJIDs(field string, in []string) ([]jid.JID, error) {
	if len(in) > maxParticipants {
		return nil, errBadRequest("%s lists more than %d users", field, maxParticipants)
	}
	out := make([]jid.JID, 0, len(in))
	for _, s := range in {
		j, err := parseJID(field, s)
		if err != nil {
			return nil, err
		}
		out = append(out, j.ToUser())
	}
	return out, nil
}

// groupActor reads the acting Meta user (or device) of a group change.
func (s *Server) groupActor(field string) (jid.JID, *simuser.Manager, error) {
	a, err := parseJID("actor", field)
	if err != nil {
		return jid.JID{}, nil, err
	}
	m, _, err := s.usersFor(a)
	if err != nil {
		return jid.JID{}, nil, err
	}
	return a, m, nil
}

// createGroup makes a simulated user create a group through the w:g2 create iq.
func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req createGroupRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	actor, m, err := s.groupActor(req.Actor)
	if err != nil {
		return err
	}
	if req.Subject == "" || len(req.Subject) > 1000 {
		return errBadRequest("subject must be 1-1000 bytes")
	}
	members, err := parseJIDs("participants", req.Participants)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	info, err := m.CreateGroup(ctx, actor, req.Subject, members)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, info)
	return nil
}

type participantsRequest struct {
	Actor        string   `json:"actor"`
	Action       string   `json:"action"`
	Participants []string `json:"participants"`
}

// changeParticipants adds, removes, promotes or demotes members; each participant
// comes back with its own result (error 403 when that user has not opted in).
func (s *Server) changeParticipants(w http.ResponseWriter, r *http.Request) error {
	group, err := parseGroupPath(r)
	if err != nil {
		return err
	}
	var req participantsRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	actor, m, err := s.groupActor(req.Actor)
	if err != nil {
		return err
	}
	action := simuser.GroupAction(req.Action)
	switch action {
	case simuser.GroupAdd, simuser.GroupRemove, simuser.GroupPromote, simuser.GroupDemote:
	default:
		return errBadRequest("action must be add, remove, promote or demote")
	}
	users, err := parseJIDs("participants", req.Participants)
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return errBadRequest("participants is empty")
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	results, err := m.ChangeParticipants(ctx, actor, group, action, users)
	if err != nil {
		return err
	}
	return ok(w, map[string]any{"group": group, "action": action, "participants": nonNil(results)})
}

type groupTextRequest struct {
	Actor       string  `json:"actor"`
	Subject     *string `json:"subject"`
	Description *string `json:"description"`
}

func (s *Server) setSubject(w http.ResponseWriter, r *http.Request) error {
	return s.setGroupText(w, r, true)
}

func (s *Server) setDescription(w http.ResponseWriter, r *http.Request) error {
	return s.setGroupText(w, r, false)
}

func (s *Server) setGroupText(w http.ResponseWriter, r *http.Request, subject bool) error {
	group, err := parseGroupPath(r)
	if err != nil {
		return err
	}
	var req groupTextRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	actor, m, err := s.groupActor(req.Actor)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	if subject {
		if req.Subject == nil || *req.Subject == "" || len(*req.Subject) > 1000 || req.Description != nil {
			return errBadRequest("give subject (1-1000 bytes) and nothing else")
		}
		err = m.SetGroupSubject(ctx, actor, group, *req.Subject)
	} else {
		if req.Description == nil || len(*req.Description) > 10000 || req.Subject != nil {
			return errBadRequest("give description (up to 10000 bytes; \"\" clears it) and nothing else")
		}
		err = m.SetGroupDescription(ctx, actor, group, *req.Description)
	}
	if err != nil {
		return err
	}
	return s.answerGroup(ctx, w, m, actor, group)
}

type leaveRequest struct {
	Actor string `json:"actor"`
}

func (s *Server) leaveGroup(w http.ResponseWriter, r *http.Request) error {
	group, err := parseGroupPath(r)
	if err != nil {
		return err
	}
	var req leaveRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	actor, m, err := s.groupActor(req.Actor)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	if err := m.LeaveGroup(ctx, actor, group); err != nil {
		return err
	}
	return ok(w, map[string]any{"group": group, "left": actor.ToUser()})
}

// answerGroup answers with the group as the actor now sees it.
func (s *Server) answerGroup(ctx context.Context, w http.ResponseWriter, m *simuser.Manager, actor, group jid.JID) error {
	info, err := m.GroupInfo(ctx, actor, group)
	if err != nil {
		return err
	}
	return ok(w, info)
}

func parseGroupPath(r *http.Request) (jid.JID, error) {
	g, err := parseJID("group jid", r.PathValue("jid"))
	if err != nil {
		return jid.JID{}, err
	}
	if !g.IsGroup() {
		return jid.JID{}, errBadRequest("%s is not a group (…@g.us)", g)
	}
	return g, nil
}
