package control

import (
	"net/http"

	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/media"
)

type mediaFaultRequest struct {
	// DirectPath is the blob to break; empty breaks every blob.
	DirectPath string `json:"direct_path"`
	// Fault is none, corrupt, truncate, extend or unavailable.
	Fault string `json:"fault"`
}

func (s *Server) mediaHost() (*media.Host, error) {
	if s.cfg.Media == nil {
		return nil, &apiError{Status: http.StatusServiceUnavailable, Message: "the media hosts are not running"}
	}
	return s.cfg.Media, nil
}

// setMediaFault makes the media hosts misbehave for one blob or all of them.
func (s *Server) setMediaFault(w http.ResponseWriter, r *http.Request) error {
	host, err := s.mediaHost()
	if err != nil {
		return err
	}
	var req mediaFaultRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	f, err := media.ParseFault(req.Fault)
	if err != nil {
		return errBadRequest("fault %q is not none, corrupt, truncate, extend or unavailable", req.Fault)
	}
	if req.DirectPath != "" && req.DirectPath[0] != '/' {
		return errBadRequest("direct_path must start with /")
	}
	host.SetFault(req.DirectPath, f)
	return ok(w, map[string]any{"direct_path": req.DirectPath, "fault": f})
}

func (s *Server) clearMediaFaults(w http.ResponseWriter, _ *http.Request) error {
	host, err := s.mediaHost()
	if err != nil {
		return err
	}
	host.ClearFaults()
	return ok(w, map[string]any{"cleared": true})
}
