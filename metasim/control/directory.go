package control

import (
	"context"
	"net/http"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

// UserView is a Meta user as the control API shows it.
type UserView struct {
	JID              jid.JID          `json:"jid"`
	Network          string           `json:"network"`
	Name             string           `json:"name,omitempty"`
	Phone            string           `json:"phone,omitempty"`
	ReadReceipts     bool             `json:"read_receipts"`
	EEA              bool             `json:"eea"`
	Devices          []jid.JID        `json:"devices"`
	KeyedDevices     []jid.JID        `json:"keyed_devices"`
	ConnectedDevices []jid.JID        `json:"connected_devices"`
	OptIn            []uint16         `json:"opt_in"`
	Restricted       *RestrictionView `json:"restricted,omitempty"`
	CreatedAt        time.Time        `json:"created_at"`
	// DeviceStatus is the simulated devices' state (connected, keys uploaded).
	DeviceStatus []simuser.DeviceStatus `json:"device_status"`
}

// RestrictionView is a sending ban.
type RestrictionView struct {
	Reason string    `json:"reason"`
	Until  time.Time `json:"until"`
}

func restrictionView(r *gateway.Restriction) *RestrictionView {
	if r == nil {
		return nil
	}
	return &RestrictionView{Reason: r.Reason, Until: r.Until}
}

func (s *Server) userView(gw *gateway.Gateway, u *gateway.User) UserView {
	v := UserView{
		JID: u.JID, Network: gw.Network(), Name: u.Options.Name, Phone: u.Options.Phone,
		ReadReceipts: u.Options.ReadReceipts, EEA: u.Options.EEA,
		Devices: nonNil(u.Devices), KeyedDevices: nonNil(u.KeyedDevices), ConnectedDevices: []jid.JID{},
		OptIn: nonNil(u.OptIns), Restricted: restrictionView(u.Restricted), CreatedAt: u.CreatedAt,
	}
	for _, d := range u.Devices {
		if gw.IsConnected(d) {
			v.ConnectedDevices = append(v.ConnectedDevices, d)
		}
	}
	v.DeviceStatus = []simuser.DeviceStatus{}
	if m := s.cfg.Users[gw.Network()]; m != nil {
		v.DeviceStatus = nonNil(m.Devices(u.JID))
	}
	return v
}

// nonNil makes empty lists [] rather than null in JSON, so scripts can iterate.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// lookupUser parses the {jid} path segment and loads that Meta user.
func (s *Server) lookupUser(r *http.Request) (*gateway.Gateway, *gateway.User, error) {
	u, err := parseJID("user jid", r.PathValue("jid"))
	if err != nil {
		return nil, nil, err
	}
	if u.Server != jid.ServerGateway && u.Server != jid.ServerMessenger {
		return nil, nil, errBadRequest("%s is not a Meta user (server s.whatsapp.net or msgr)", u)
	}
	gw, err := s.gatewayFor(u, "")
	if err != nil {
		return nil, nil, err
	}
	user, err := gw.User(r.Context(), u.ToUser())
	if err != nil {
		return nil, nil, err
	}
	return gw, user, nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	network := r.URL.Query().Get("network")
	out := []UserView{}
	for _, name := range s.networkNames() {
		if network != "" && name != network {
			continue
		}
		gw := s.cfg.Gateways[name]
		users, err := gw.Users(r.Context())
		if err != nil {
			return err
		}
		for i := range users {
			out = append(out, s.userView(gw, &users[i]))
		}
	}
	if network != "" && s.cfg.Gateways[network] == nil {
		return errBadRequest("network %q is not enabled", network)
	}
	return ok(w, map[string]any{"users": out})
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) error {
	gw, u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	return ok(w, s.userView(gw, u))
}

// reloadUser answers with the user's state after a change.
func (s *Server) reloadUser(ctx context.Context, w http.ResponseWriter, gw *gateway.Gateway, user jid.JID) error {
	u, err := gw.User(ctx, user)
	if err != nil {
		return err
	}
	return ok(w, s.userView(gw, u))
}

type patchUserRequest struct {
	Name         *string `json:"name"`
	ReadReceipts *bool   `json:"read_receipts"`
	AutoRead     *bool   `json:"auto_read"`
	EEA          *bool   `json:"eea"`
	Phone        *string `json:"phone"`
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) error {
	gw, u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	var req patchUserRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	opts := u.Options
	if req.Name != nil {
		opts.Name = *req.Name
	}
	if req.ReadReceipts != nil {
		opts.ReadReceipts = *req.ReadReceipts
	}
	if req.EEA != nil {
		opts.EEA = *req.EEA
	}
	if req.Phone != nil {
		if *req.Phone != "" && !gateway.IsE164(*req.Phone) {
			return errBadRequest("phone %q is not an E.164 number", *req.Phone)
		}
		opts.Phone = trimPlus(*req.Phone)
	}
	if err := gw.SetUserOptions(r.Context(), u.JID, opts); err != nil {
		return err
	}
	if req.AutoRead != nil {
		m := s.cfg.Users[gw.Network()]
		if m == nil {
			return &apiError{Status: http.StatusServiceUnavailable, Message: "no simulated users on " + gw.Network()}
		}
		if err := m.SetAutoRead(r.Context(), u.JID, *req.AutoRead); err != nil {
			return err
		}
	}
	return s.reloadUser(r.Context(), w, gw, u.JID)
}

type optInRequest struct {
	// Integrators is the complete list of allowed integrators; [] turns third-party
	// chats off.
	Integrators []uint16 `json:"integrators"`
}

// setOptIn makes the user's allowed integrators exactly the given list.
func (s *Server) setOptIn(w http.ResponseWriter, r *http.Request) error {
	gw, u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	var req optInRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Integrators == nil {
		return errBadRequest("integrators is missing (give [] to turn third-party chats off)")
	}
	want := map[uint16]bool{}
	for _, id := range req.Integrators {
		if _, known := gw.Integrator(id); !known {
			return errBadRequest("integrator %d is not registered on %s", id, gw.Network())
		}
		want[id] = true
	}
	for _, id := range u.OptIns {
		if !want[id] {
			if err := gw.SetOptIn(r.Context(), u.JID, id, false); err != nil {
				return err
			}
		}
	}
	for id := range want {
		if err := gw.SetOptIn(r.Context(), u.JID, id, true); err != nil {
			return err
		}
	}
	return s.reloadUser(r.Context(), w, gw, u.JID)
}

type restrictRequest struct {
	Reason   string `json:"reason"`
	Duration string `json:"duration"` // "24h"; default one day
	Network  string `json:"network"`  // for third-party accounts
}

// restrict bans a Meta user or a third-party account from sending, as reports would.
func (s *Server) restrict(w http.ResponseWriter, r *http.Request) error {
	target, err := parseJID("jid", r.PathValue("jid"))
	if err != nil {
		return err
	}
	var req restrictRequest
	if err := decodeOptional(r, &req); err != nil {
		return err
	}
	gw, err := s.gatewayFor(target, req.Network)
	if err != nil {
		return err
	}
	d := 24 * time.Hour
	if req.Duration != "" {
		if d, err = parseDuration(req.Duration); err != nil || d <= 0 {
			return errBadRequest("duration %q is not a positive duration like 24h", req.Duration)
		}
	}
	if req.Reason == "" {
		req.Reason = "spam"
	}
	until := time.Now().Add(d)
	if err := gw.Restrict(r.Context(), target.ToUser(), req.Reason, until); err != nil {
		return err
	}
	return ok(w, map[string]any{"jid": target.ToUser(), "restricted": RestrictionView{Reason: req.Reason, Until: until}})
}

func (s *Server) unrestrict(w http.ResponseWriter, r *http.Request) error {
	target, err := parseJID("jid", r.PathValue("jid"))
	if err != nil {
		return err
	}
	gw, err := s.gatewayFor(target, r.URL.Query().Get("network"))
	if err != nil {
		return err
	}
	if err := gw.Unrestrict(r.Context(), target.ToUser()); err != nil {
		return err
	}
	return ok(w, map[string]any{"jid": target.ToUser(), "restricted": nil})
}

func trimPlus(s string) string {
	if len(s) > 0 && s[0] == '+' {
		return s[1:]
	}
	return s
}
