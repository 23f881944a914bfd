package control

import (
	"net/http"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
)

// Fault kinds of POST /v1/faults.
const (
	FaultDrop       = "drop"        // cut the live connection now
	FaultDelay      = "delay"       // delay every stanza to the endpoint by delay ("0s" ends it)
	FaultDuplicate  = "duplicate"   // send each of the next count stanzas twice
	FaultReorder    = "reorder"     // send the next count stanzas in reverse order
	FaultRefuse     = "refuse"      // refuse the endpoint's next count sends with code [reason]
	FaultStopPings  = "stop_pings"  // stop answering the endpoint's pings
	FaultStartPings = "start_pings" // answer them again
)

// maxFaultDelay keeps a typo ("5000s") from wedging a connection for hours.
const maxFaultDelay = 10 * time.Minute

type faultRequest struct {
	Network  string `json:"network"`
	Endpoint string `json:"endpoint"`
	Kind     string `json:"kind"`
	Delay    string `json:"delay"`
	Count    int    `json:"count"`
	Code     int    `json:"code"`
	Reason   string `json:"reason"`
}

// faultEndpoint resolves an endpoint (a Meta device or a third-party account) and its
// gateway.
func (s *Server) faultEndpoint(network, endpoint string) (*gateway.Gateway, jid.JID, error) {
	e, err := parseJID("endpoint", endpoint)
	if err != nil {
		return nil, jid.JID{}, err
	}
	if e.IsGroup() {
		return nil, jid.JID{}, errBadRequest("endpoint must be a device or a third-party account, not a group")
	}
	if e.IsInterop() {
		e = e.ToUser()
	}
	gw, err := s.gatewayFor(e, network)
	if err != nil {
		return nil, jid.JID{}, err
	}
	return gw, e, nil
}

func (s *Server) addFault(w http.ResponseWriter, r *http.Request) error {
	var req faultRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	gw, e, err := s.faultEndpoint(req.Network, req.Endpoint)
	if err != nil {
		return err
	}
	if req.Count < 0 || req.Count > 10000 {
		return errBadRequest("count must be 0-10000")
	}
	f := gw.Faults()
	out := map[string]any{"endpoint": e, "network": gw.Network(), "kind": req.Kind}
	switch req.Kind {
	case FaultDrop:
		out["dropped"] = f.DropConnection(e)
	case FaultDelay:
		d, err := parseDuration(req.Delay)
		if err != nil || d < 0 || d > maxFaultDelay {
			return errBadRequest("delay must be a duration from 0s to %s", maxFaultDelay)
		}
		f.DelayStanzas(e, d)
	case FaultDuplicate, FaultReorder:
		if req.Count == 0 {
			return errBadRequest("count must be at least 1")
		}
		if req.Kind == FaultDuplicate {
			f.DuplicateNext(e, req.Count)
		} else {
			f.ReorderNext(e, req.Count)
		}
	case FaultRefuse:
		if req.Count == 0 {
			req.Count = 1
		}
		if req.Code < 400 || req.Code > 599 {
			return errBadRequest("code must be a protocol error code 400-599 (e.g. 429, 503)")
		}
		f.RefuseNextSends(e, req.Count, req.Code, req.Reason)
	case FaultStopPings, FaultStartPings:
		f.StopAnsweringPings(e, req.Kind == FaultStopPings)
	case "":
		return errBadRequest("kind is missing")
	default:
		return errBadRequest("unknown fault kind %q (drop, delay, duplicate, reorder, refuse, stop_pings, start_pings)", req.Kind)
	}
	return ok(w, out)
}

// clearFaults removes every fault of one endpoint.
func (s *Server) clearFaults(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	gw, e, err := s.faultEndpoint(q.Get("network"), q.Get("endpoint"))
	if err != nil {
		return err
	}
	gw.Faults().Clear(e)
	return ok(w, map[string]any{"endpoint": e, "network": gw.Network(), "cleared": true})
}
