package control

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/simuser"
)

// Bounds of what one request may ask for.
const (
	maxDevices = 16
	// actionTimeout bounds a request that waits for devices (create, add, reset) or
	// for the gateway's ack (sends, iqs), so a stuck device cannot hold a request
	// forever.
	actionTimeout = 60 * time.Second
)

func (s *Server) userRoutes(h func(string, func(http.ResponseWriter, *http.Request) error)) {
	h("POST /v1/users/{jid}/messages", s.sendMessage)
	h("POST /v1/users/{jid}/typing", s.sendTyping)
	h("POST /v1/users/{jid}/receipts", s.sendReceipts)
	h("GET /v1/users/{jid}/inbox", s.getInbox)
	h("DELETE /v1/users/{jid}/inbox", s.clearInbox)
	h("POST /v1/users/{jid}/block", s.block)
	h("POST /v1/users/{jid}/unblock", s.unblock)
	h("POST /v1/users/{jid}/report", s.report)
	h("POST /v1/users/{jid}/reset-identity", s.resetIdentity)

	h("POST /v1/groups", s.createGroup)
	h("POST /v1/groups/{jid}/participants", s.changeParticipants)
	h("PUT /v1/groups/{jid}/subject", s.setSubject)
	h("PUT /v1/groups/{jid}/description", s.setDescription)
	h("POST /v1/groups/{jid}/leave", s.leaveGroup)
}

// usersFor returns the simulated users of a Meta JID's network.
func (s *Server) usersFor(j jid.JID) (*simuser.Manager, *gateway.Gateway, error) {
	if j.Server != jid.ServerGateway && j.Server != jid.ServerMessenger {
		return nil, nil, errBadRequest("%s is not a Meta user or device (server s.whatsapp.net or msgr)", j)
	}
	gw, err := s.gatewayFor(j, "")
	if err != nil {
		return nil, nil, err
	}
	m := s.cfg.Users[gw.Network()]
	if m == nil {
		return nil, nil, &apiError{Status: http.StatusServiceUnavailable, Message: "no simulated users on " + gw.Network()}
	}
	return m, gw, nil
}

// actor parses the {jid} path segment: a Meta user (its device 0 acts) or one of its
// devices.
func (s *Server) actor(r *http.Request) (jid.JID, *simuser.Manager, *gateway.Gateway, error) {
	a, err := parseJID("user jid", r.PathValue("jid"))
	if err != nil {
		return jid.JID{}, nil, nil, err
	}
	m, gw, err := s.usersFor(a)
	if err != nil {
		return jid.JID{}, nil, nil, err
	}
	return a, m, gw, nil
}

func withTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), actionTimeout)
}

type createUserRequest struct {
	Network      string   `json:"network"`
	Number       string   `json:"number"`
	FBID         string   `json:"fbid"`
	Phone        string   `json:"phone"`
	Name         string   `json:"name"`
	Devices      int      `json:"devices"`
	OptIn        []uint16 `json:"opt_in"`
	ReadReceipts *bool    `json:"read_receipts"`
	AutoRead     bool     `json:"auto_read"`
	EEA          bool     `json:"eea"`
}

// userJID decides the new user's JID: a WhatsApp number or a Messenger id.
func (req *createUserRequest) userJID() (jid.JID, error) {
	switch {
	case req.Number != "" && req.FBID != "":
		return jid.JID{}, errBadRequest("give number (WhatsApp) or fbid (Messenger), not both")
	case req.FBID != "":
		if req.Network != "" && req.Network != gateway.NetworkMessenger {
			return jid.JID{}, errBadRequest("fbid is for network messenger")
		}
		if !isDigits(req.FBID, 20) {
			return jid.JID{}, errBadRequest("fbid %q must be 1-20 digits", req.FBID)
		}
		return jid.New(req.FBID, jid.ServerMessenger), nil
	case req.Number != "":
		if req.Network != "" && req.Network != gateway.NetworkWhatsApp {
			return jid.JID{}, errBadRequest("number is for network whatsapp (use fbid for messenger)")
		}
		if !gateway.IsE164(req.Number) {
			return jid.JID{}, errBadRequest("number %q is not an E.164 number like +491701234567", req.Number)
		}
		return jid.New(trimPlus(req.Number), jid.ServerGateway), nil
	}
	return jid.JID{}, errBadRequest("number (WhatsApp) or fbid (Messenger) is missing")
}

func isDigits(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// createUser makes a simulated Meta user whose devices are real Signal parties,
// connected and with their keys on the gateway when the answer comes.
func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	var req createUserRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	u, err := req.userJID()
	if err != nil {
		return err
	}
	if req.Devices < 0 || req.Devices > maxDevices {
		return errBadRequest("devices must be 1-%d", maxDevices)
	}
	if req.Phone != "" && !gateway.IsE164(req.Phone) {
		return errBadRequest("phone %q is not an E.164 number", req.Phone)
	}
	m, gw, err := s.usersFor(u)
	if err != nil {
		return err
	}
	for _, id := range req.OptIn {
		if _, known := gw.Integrator(id); !known {
			return errBadRequest("integrator %d is not registered on %s", id, gw.Network())
		}
	}
	readReceipts := req.ReadReceipts == nil || *req.ReadReceipts
	ctx, cancel := withTimeout(r)
	defer cancel()
	_, err = m.CreateUser(ctx, u, req.Devices, simuser.UserOptions{
		Gateway:  gateway.UserOptions{ReadReceipts: readReceipts, EEA: req.EEA, Phone: trimPlus(req.Phone), Name: req.Name},
		OptIn:    req.OptIn,
		AutoRead: req.AutoRead,
	})
	if err != nil {
		return err
	}
	user, err := gw.User(r.Context(), u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s.userView(gw, user))
	return nil
}

func (s *Server) addDevice(w http.ResponseWriter, r *http.Request) error {
	gw, u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	m, _, err := s.usersFor(u.JID)
	if err != nil {
		return err
	}
	if err := decodeOptional(r, &struct{}{}); err != nil {
		return err
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	dev, err := m.AddDevice(ctx, u.JID)
	if err != nil {
		return err
	}
	user, err := gw.User(r.Context(), u.JID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"device": dev, "user": s.userView(gw, user)})
	return nil
}

func (s *Server) removeDevice(w http.ResponseWriter, r *http.Request) error {
	gw, u, err := s.lookupUser(r)
	if err != nil {
		return err
	}
	dev, err := parseJID("device", r.PathValue("device"))
	if err != nil {
		return err
	}
	if dev.ToUser() != u.JID {
		return errBadRequest("device %s is not one of %s's", dev, u.JID)
	}
	if dev.Device == 0 {
		return errBadRequest("device 0 is the user's phone and cannot be removed")
	}
	m, _, err := s.usersFor(u.JID)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	if err := m.RemoveDevice(ctx, dev); err != nil {
		return err
	}
	return s.reloadUser(r.Context(), w, gw, u.JID)
}

// resetIdentity gives a device (device 0 when a user is named) a new identity key.
func (s *Server) resetIdentity(w http.ResponseWriter, r *http.Request) error {
	dev, m, _, err := s.actor(r)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	if err := m.ResetIdentity(ctx, dev); err != nil {
		return err
	}
	return ok(w, map[string]any{"device": dev, "reset": true})
}

type blockRequest struct {
	JID string `json:"jid"`
}

func (s *Server) block(w http.ResponseWriter, r *http.Request) error { return s.setBlock(w, r, true) }
func (s *Server) unblock(w http.ResponseWriter, r *http.Request) error {
	return s.setBlock(w, r, false)
}

// setBlock goes through the blocklist iq of the user's own connection, as the app
// would.
func (s *Server) setBlock(w http.ResponseWriter, r *http.Request, block bool) error {
	from, m, _, err := s.actor(r)
	if err != nil {
		return err
	}
	var req blockRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	target, err := parseJID("jid", req.JID)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(r)
	defer cancel()
	if err := m.Block(ctx, from, target.ToUser(), block); err != nil {
		return err
	}
	return ok(w, map[string]any{"user": from.ToUser(), "jid": target.ToUser(), "blocked": block})
}

// extraStatus maps the simulated users' errors.
func extraStatus(err error) int {
	switch {
	case errors.Is(err, simuser.ErrBadContent), errors.Is(err, interop.ErrNothingToSend):
		return http.StatusBadRequest
	case errors.Is(err, interop.ErrNoDevices):
		// The gateway hides the devices of whom the sender may not reach (section 8).
		return http.StatusForbidden
	case errors.Is(err, simuser.ErrUnknownDevice):
		return http.StatusNotFound
	case errors.Is(err, simuser.ErrClosed), errors.Is(err, simuser.ErrNoMediaHost), errors.Is(err, simuser.ErrNotReady):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return 0
}
