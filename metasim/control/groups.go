package control

import (
	"errors"
	"net/http"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
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
