package interop

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/errcode"
)

// Backoff is jittered exponential backoff: Initial, doubling up to Max (PROTOCOL.md
// section 10: 1 s doubling to 5 min). Each delay is drawn from [d·(1-Jitter), d] so
// that many accounts dropped by the same gateway outage do not come back in lockstep;
// jitter only shortens the delay, so Max stays a true cap.
//
// A Backoff is not safe for concurrent use; give each loop its own.
type Backoff struct {
	Initial time.Duration // default 1 s
	Max     time.Duration // default 5 min
	// Jitter is the fraction in (0, 1] a delay may be shortened by: 0 means the
	// default 0.25, a negative value none at all.
	Jitter float64
	// Rand returns a number in [0, 1); default math/rand/v2. Tests pin it.
	Rand func() float64

	attempt int
}

const (
	defaultBackoffInitial = time.Second
	defaultBackoffMax     = 5 * time.Minute
	defaultBackoffJitter  = 0.25
)

func (b *Backoff) withDefaults() {
	if b.Initial <= 0 {
		b.Initial = defaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = defaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Jitter == 0 {
		b.Jitter = defaultBackoffJitter
	}
	b.Jitter = min(b.Jitter, 1)
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	b.withDefaults()
	d := b.Initial
	for i := 0; i < b.attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	b.attempt++
	if b.Jitter < 0 {
		return d
	}
	r := b.Rand()
	if r < 0 || r >= 1 {
		r = 0
	}
	return d - time.Duration(float64(d)*b.Jitter*r)
}

// Reset starts over at Initial, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// RetryDelay says how the layer above should retry a send the gateway refused
// (PROTOCOL.md section 10): for 429 the gateway's retry_after (or the backoff when it
// gave none), for 500/503 the backoff, for 409/412 at once (after refreshing devices
// or uploading keys). retry is false for errors that sending again will not fix.
// Transport errors (ErrDisconnected, timeouts, ErrNotConnected) retry with the backoff.
func RetryDelay(err error, b *Backoff) (delay time.Duration, retry bool) {
	if err == nil {
		return 0, false
	}
	var e *errcode.Error
	if errors.As(err, &e) {
		switch e.Code {
		case 429:
			if e.RetryAfter > 0 {
				return e.RetryAfter, true
			}
			return b.Next(), true
		case 500, 503:
			return b.Next(), true
		case 409, 412:
			return 0, true
		}
		return 0, false
	}
	if errors.Is(err, ErrDisconnected) || errors.Is(err, ErrNotConnected) ||
		errors.Is(err, ErrIQTimeout) || errors.Is(err, ErrAckTimeout) {
		return b.Next(), true
	}
	return 0, false
}
