package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway"
)

// apiError is an error answer: {"error": Message, "code": Status}.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

func errBadRequest(format string, args ...any) error {
	return &apiError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

func errNotFound(format string, args ...any) error {
	return &apiError{Status: http.StatusNotFound, Message: fmt.Sprintf(format, args...)}
}

// toAPIError maps the errors of the gateway and the simulated users to HTTP statuses.
// Protocol refusals keep their code where it is an HTTP status too (403, 404, 429…).
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body over %d bytes", mbe.Limit)}
	}
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, gateway.ErrUnknownUser), errors.Is(err, gateway.ErrUnknownDevice),
		errors.Is(err, gateway.ErrUnknownGroup):
		status = http.StatusNotFound
	case errors.Is(err, gateway.ErrUserExists):
		status = http.StatusConflict
	case errors.Is(err, gateway.ErrWrongServer), errors.Is(err, gateway.ErrPrimaryDevice):
		status = http.StatusBadRequest
	case errors.Is(err, gateway.ErrNotEEA):
		status = http.StatusForbidden
	case errors.Is(err, gateway.ErrClosed):
		status = http.StatusServiceUnavailable
	default:
		var pe *errcode.Error
		if errors.As(err, &pe) && pe.Code >= 400 && pe.Code < 600 {
			status = pe.Code
		} else if extra := extraStatus(err); extra != 0 {
			status = extra
		}
	}
	return &apiError{Status: status, Message: err.Error()}
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, map[string]any{"error": e.Message, "code": e.Status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ok answers 200 with v.
func ok(w http.ResponseWriter, v any) error {
	writeJSON(w, http.StatusOK, v)
	return nil
}

// decode reads a JSON body strictly: unknown fields and trailing data are mistakes
// worth telling the caller about, not things to ignore.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return errBadRequest("request body is empty; send a JSON object")
		}
		return errBadRequest("bad JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errBadRequest("bad JSON body: data after the object")
	}
	return nil
}

// decodeOptional is decode for endpoints whose body may be left out.
func decodeOptional(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	err := decode(r, v)
	var ae *apiError
	if errors.As(err, &ae) && strings.HasPrefix(ae.Message, "request body is empty") {
		return nil
	}
	return err
}

// parseJID reads a JID from a path segment or field, naming the field on failure.
func parseJID(field, s string) (jid.JID, error) {
	if s == "" {
		return jid.JID{}, errBadRequest("%s is missing", field)
	}
	j, err := jid.Parse(s)
	if err != nil || j.User == "" {
		return jid.JID{}, errBadRequest("%s %q is not a JID like 491701234567@s.whatsapp.net", field, s)
	}
	return j, nil
}

// queryInt reads an optional non-negative integer query parameter.
func queryInt(r *http.Request, name string, def, maxVal int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > maxVal {
		return 0, errBadRequest("query parameter %s must be an integer from 0 to %d", name, maxVal)
	}
	return n, nil
}

// queryDuration reads an optional duration ("30s", or plain seconds) capped at maxVal.
func queryDuration(r *http.Request, name string, maxVal time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	d, err := parseDuration(v)
	if err != nil || d < 0 || d > maxVal {
		return 0, errBadRequest("query parameter %s must be a duration from 0 to %s (e.g. 30s)", name, maxVal)
	}
	return d, nil
}

// parseDuration reads Go's notation or plain seconds.
func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n < 0 || n > 1e9 {
			return 0, errors.New("out of range")
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(v)
}
