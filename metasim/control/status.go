package control

import (
	"crypto/ed25519"
	"net/http"
	"slices"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
)

// Status is GET /v1/status: where everything listens and what a bridge needs to trust
// the gateways. It holds no secrets.
type Status struct {
	Control  string          `json:"control"`
	Media    string          `json:"media,omitempty"`
	Networks []NetworkStatus `json:"networks"`
}

// NetworkStatus is one enabled network.
type NetworkStatus struct {
	Name          string             `json:"name"`
	Server        string             `json:"server"`
	GatewayURL    string             `json:"gateway_url"`
	RootPublicKey ed25519.PublicKey  `json:"root_public_key"` // base64 in JSON
	RootKeyFile   string             `json:"root_key_file,omitempty"`
	RequireEEA    bool               `json:"require_eea"`
	Integrators   []IntegratorStatus `json:"integrators"`
}

// IntegratorStatus is a registered integrator, without its callback secret.
type IntegratorStatus struct {
	ID           uint16 `json:"id"`
	Name         string `json:"name"`
	CallbackBase string `json:"callback_base"`
	MediaOrigin  string `json:"media_origin,omitempty"`
}

func (s *Server) getStatus(w http.ResponseWriter, _ *http.Request) error {
	var st Status
	if s.cfg.Status != nil {
		st = s.cfg.Status()
	}
	return ok(w, st)
}

// networkNames lists the enabled networks in a fixed order.
func (s *Server) networkNames() []string {
	names := make([]string, 0, len(s.cfg.Gateways))
	for name := range s.cfg.Gateways {
		names = append(names, name)
	}
	slices.Sort(names)
	// WhatsApp first: it is the default network.
	slices.SortStableFunc(names, func(a, b string) int {
		switch {
		case a == gateway.NetworkWhatsApp && b != a:
			return -1
		case b == gateway.NetworkWhatsApp && b != a:
			return 1
		}
		return 0
	})
	return names
}

// gatewayNamed returns the gateway of a network name; "" is the default network
// (WhatsApp when enabled).
func (s *Server) gatewayNamed(name string) (*gateway.Gateway, error) {
	if name == "" {
		names := s.networkNames()
		if len(names) == 0 {
			return nil, &apiError{Status: http.StatusServiceUnavailable, Message: "no network is enabled"}
		}
		name = names[0]
	}
	gw := s.cfg.Gateways[name]
	if gw == nil {
		return nil, errBadRequest("network %q is not enabled (use whatsapp or messenger)", name)
	}
	return gw, nil
}

// gatewayFor picks the gateway responsible for a JID: a Meta user's server decides;
// third-party accounts and groups exist on either network, so network (a query
// parameter or body field, default the first enabled network) decides for them.
func (s *Server) gatewayFor(j jid.JID, network string) (*gateway.Gateway, error) {
	var byServer string
	switch j.Server {
	case jid.ServerGateway:
		byServer = gateway.NetworkWhatsApp
	case jid.ServerMessenger:
		byServer = gateway.NetworkMessenger
	case jid.ServerInterop, jid.ServerGroup:
		return s.gatewayNamed(network)
	default:
		return nil, errBadRequest("%s is not on a Meta server, a group or a third-party account", j)
	}
	if network != "" && network != byServer {
		return nil, errBadRequest("%s belongs to network %s, not %s", j, byServer, network)
	}
	return s.gatewayNamed(byServer)
}

// networkOf names the network of a Meta user's server.
func networkOf(server string) string {
	if server == jid.ServerMessenger {
		return gateway.NetworkMessenger
	}
	return gateway.NetworkWhatsApp
}
