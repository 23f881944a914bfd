// Package errcode holds the protocol error codes of PROTOCOL.md section 10 as sentinel
// errors, and the Error type that carries one code with its details.
//
// Use errors.Is(err, errcode.ErrRateLimited) to branch on a code; errors.As to read the
// reason and retry_after. It imports nothing from the rest of the project.
package errcode

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Sentinels, one per code. Each is an *Error so that it can be compared with errors.Is.
var (
	ErrMalformed       = &Error{Code: 400, Text: "malformed stanza"}
	ErrUnauthorized    = &Error{Code: 401, Text: "token invalid or revoked"}
	ErrForbidden       = &Error{Code: 403, Text: "recipient unreachable"}
	ErrNotFound        = &Error{Code: 404, Text: "no such user or group"}
	ErrNotAcceptable   = &Error{Code: 406, Text: "content type not supported over interop"}
	ErrStaleDevices    = &Error{Code: 409, Text: "stale device list"}
	ErrNoKeys          = &Error{Code: 412, Text: "account has no keys uploaded"}
	ErrTooLarge        = &Error{Code: 413, Text: "too large"}
	ErrRateLimited     = &Error{Code: 429, Text: "rate limited"}
	ErrInternal        = &Error{Code: 500, Text: "gateway error"}
	ErrUnavailable     = &Error{Code: 503, Text: "gateway unavailable"}
	ErrProtocolSwitch  = &Error{Code: 405, Text: "not allowed"}
	ErrReconnectNeeded = &Error{Code: 515, Text: "reconnect requested"}
)

var sentinels = []*Error{
	ErrMalformed, ErrUnauthorized, ErrForbidden, ErrNotFound, ErrNotAcceptable,
	ErrStaleDevices, ErrNoKeys, ErrTooLarge, ErrRateLimited, ErrInternal, ErrUnavailable,
	ErrProtocolSwitch, ErrReconnectNeeded,
}

// Reasons that come with 403.
const (
	ReasonRegion     = "region"
	ReasonRestricted = "restricted"
	ReasonOptIn      = "not-opted-in"
	ReasonBlocked    = "blocked"
)

// Error is a refusal by the other side: an iq error, a refused message ack, a failure
// or a stream error.
type Error struct {
	Code       int
	Text       string
	Reason     string
	RetryAfter time.Duration
}

// New makes an error for a code, filling in the standard text.
func New(code int) *Error {
	for _, s := range sentinels {
		if s.Code == code {
			return &Error{Code: code, Text: s.Text}
		}
	}
	return &Error{Code: code, Text: "error " + strconv.Itoa(code)}
}

// Parse makes an error from a code attribute; a missing or non-numeric code becomes 500.
func Parse(code, text, reason, retryAfter string) *Error {
	n, err := strconv.Atoi(code)
	if err != nil || n < 100 || n > 999 {
		n = 500
	}
	e := New(n)
	if text != "" {
		e.Text = text
	}
	e.Reason = reason
	if secs, err := strconv.Atoi(retryAfter); err == nil && secs > 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	return e
}

func (e *Error) Error() string {
	msg := strconv.Itoa(e.Code) + " " + e.Text
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(", retry after %s", e.RetryAfter)
	}
	return msg
}

// Is matches any *Error with the same code, so errors.Is(err, ErrRateLimited) holds
// for every 429 whatever its details.
func (e *Error) Is(target error) bool {
	var other *Error
	if !errors.As(target, &other) {
		return false
	}
	return other.Code == e.Code
}

// Retryable says whether sending the same thing again later may succeed (section 10).
func (e *Error) Retryable() bool {
	switch e.Code {
	case 409, 412, 429, 500, 503:
		return true
	}
	return false
}

// CodeOf returns the protocol code in err, or 0 when it holds none.
func CodeOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}
