package control

import (
	"net/http"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
)

// AccountView is a third-party account known to a gateway.
type AccountView struct {
	JID          jid.JID          `json:"jid"`
	Network      string           `json:"network"`
	Integrator   uint16           `json:"integrator"`
	ReadReceipts bool             `json:"read_receipts"`
	HasKeys      bool             `json:"has_keys"`
	Connected    bool             `json:"connected"`
	QueueDepth   int              `json:"queue_depth"`
	Restricted   *RestrictionView `json:"restricted,omitempty"`
	FirstSeen    time.Time        `json:"first_seen"`
	LastSeen     time.Time        `json:"last_seen"`
}

func (s *Server) accountViews(r *http.Request, gw *gateway.Gateway) ([]AccountView, error) {
	accounts, err := gw.Accounts(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]AccountView, 0, len(accounts))
	for _, a := range accounts {
		depth, err := gw.QueueDepth(r.Context(), a.JID)
		if err != nil {
			return nil, err
		}
		out = append(out, AccountView{
			JID: a.JID, Network: gw.Network(), Integrator: a.Integrator, ReadReceipts: a.ReadReceipts,
			HasKeys: a.HasKeys, Connected: a.Connected, QueueDepth: depth,
			Restricted: restrictionView(a.Restricted), FirstSeen: a.FirstSeen, LastSeen: a.LastSeen,
		})
	}
	return out, nil
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) error {
	network := r.URL.Query().Get("network")
	if network != "" && s.cfg.Gateways[network] == nil {
		return errBadRequest("network %q is not enabled", network)
	}
	out := []AccountView{}
	for _, name := range s.networkNames() {
		if network != "" && name != network {
			continue
		}
		views, err := s.accountViews(r, s.cfg.Gateways[name])
		if err != nil {
			return err
		}
		out = append(out, views...)
	}
	return ok(w, map[string]any{"accounts": out})
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) error {
	a, err := parseJID("account jid", r.PathValue("jid"))
	if err != nil {
		return err
	}
	if !a.IsInterop() {
		return errBadRequest("%s is not a third-party account ({integrator}-{number}@interop)", a)
	}
	gw, err := s.gatewayFor(a, r.URL.Query().Get("network"))
	if err != nil {
		return err
	}
	views, err := s.accountViews(r, gw)
	if err != nil {
		return err
	}
	for _, v := range views {
		if v.JID == a.ToUser() {
			return ok(w, v)
		}
	}
	return errNotFound("account %s never logged in to %s", a, gw.Network())
}

// ConnectionView is one live connection of a gateway.
type ConnectionView struct {
	Endpoint   jid.JID `json:"endpoint"`
	Network    string  `json:"network"`
	ThirdParty bool    `json:"third_party"`
	QueueDepth int     `json:"queue_depth"`
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) error {
	out := []ConnectionView{}
	for _, name := range s.networkNames() {
		gw := s.cfg.Gateways[name]
		for _, e := range gw.ConnectedEndpoints() {
			depth, err := gw.QueueDepth(r.Context(), e)
			if err != nil {
				return err
			}
			out = append(out, ConnectionView{Endpoint: e, Network: name, ThirdParty: e.IsInterop(), QueueDepth: depth})
		}
	}
	return ok(w, map[string]any{"connections": out})
}
