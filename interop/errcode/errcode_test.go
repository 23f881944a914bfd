package errcode

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestIsMatchesByCode(t *testing.T) {
	tests := []struct {
		code   string
		target error
	}{
		{"400", ErrMalformed}, {"401", ErrUnauthorized}, {"403", ErrForbidden},
		{"404", ErrNotFound}, {"406", ErrNotAcceptable}, {"409", ErrStaleDevices},
		{"412", ErrNoKeys}, {"413", ErrTooLarge}, {"429", ErrRateLimited},
		{"500", ErrInternal}, {"503", ErrUnavailable},
	}
	for _, tt := range tests {
		err := fmt.Errorf("failed to send: %w", Parse(tt.code, "", "", ""))
		if !errors.Is(err, tt.target) {
			t.Errorf("code %s does not match %v", tt.code, tt.target)
		}
		if errors.Is(err, ErrMalformed) != (tt.target == ErrMalformed) {
			t.Errorf("code %s wrongly matches 400", tt.code)
		}
	}
}

func TestParseDetails(t *testing.T) {
	e := Parse("429", "", "", "12")
	if e.RetryAfter != 12*time.Second || !e.Retryable() {
		t.Errorf("got %+v", e)
	}
	if e := Parse("403", "", ReasonRestricted, ""); e.Reason != ReasonRestricted || e.Retryable() {
		t.Errorf("got %+v", e)
	}
	if e := Parse("junk", "", "", ""); e.Code != 500 {
		t.Errorf("non-numeric code became %d", e.Code)
	}
	if CodeOf(errors.New("plain")) != 0 || CodeOf(fmt.Errorf("x: %w", ErrTooLarge)) != 413 {
		t.Error("CodeOf is wrong")
	}
}
