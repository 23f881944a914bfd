package stanza

import (
	"errors"
	"strconv"
)

// Limits of the codec. MaxFrameSize is the protocol's frame limit (PROTOCOL.md section
// 3); the other two bound the work and memory a hostile frame can cost, far above what
// any stanza of the protocol needs.
const (
	MaxFrameSize = 1 << 20
	MaxDepth     = 64
	MaxAttrs     = 64
)

// Sentinels for the connection layer: ErrTooLarge maps to stream:error 413, ErrMalformed
// to 400. Every error from Marshal and Unmarshal matches exactly one of them.
var (
	ErrTooLarge  = errors.New("stanza exceeds the 1 MiB frame limit")
	ErrMalformed = errors.New("malformed stanza")
)

var (
	_ error = (*SyntaxError)(nil)
)

// SyntaxError says where and why a frame is not a stanza. It never quotes the frame, so
// it is safe to log: frames carry message content.
type SyntaxError struct {
	Offset int // byte offset in the frame, or -1 for Marshal
	Reason string
}

func (e *SyntaxError) Error() string {
	if e.Offset < 0 {
		return "malformed stanza: " + e.Reason
	}
	return "malformed stanza at byte " + strconv.Itoa(e.Offset) + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrMalformed) hold.
func (e *SyntaxError) Unwrap() error { return ErrMalformed }

func syntaxErr(off int, reason string) error {
	return &SyntaxError{Offset: off, Reason: reason}
}

func marshalErr(reason string) error {
	return &SyntaxError{Offset: -1, Reason: reason}
}
