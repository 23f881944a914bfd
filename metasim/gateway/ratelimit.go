package gateway

import (
	"sync"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// rateLimiter keeps the accepted sends of each third-party account within the
// sliding windows of section 8 (30 per 10 s, 1,000 per hour). It lives in memory: a
// restarted gateway starts with empty windows, which only ever lets more through.
type rateLimiter struct {
	mu    sync.Mutex
	sends map[jid.JID][]time.Time // accepted sends within the longest window, oldest first
}

func newRateLimiter() *rateLimiter { return &rateLimiter{sends: make(map[jid.JID][]time.Time)} }

// window is one limit: at most max sends per length.
type window struct {
	max    int
	length time.Duration
}

// check returns how long the account must wait before another send fits every
// window (0 when it fits now).
func (r *rateLimiter) check(account jid.JID, now time.Time, windows ...window) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var wait time.Duration
	longest := time.Duration(0)
	for _, w := range windows {
		longest = max(longest, w.length)
	}
	sends := r.prune(account, now, longest)
	for _, w := range windows {
		var in []time.Time
		for i, t := range sends {
			if now.Sub(t) < w.length {
				in = sends[i:]
				break
			}
		}
		if len(in) >= w.max {
			// The send that frees a slot is the one max places from the newest.
			freeAt := in[len(in)-w.max].Add(w.length)
			wait = max(wait, freeAt.Sub(now))
		}
	}
	return wait
}

// record counts an accepted send.
func (r *rateLimiter) record(account jid.JID, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sends[account] = append(r.sends[account], now)
}

func (r *rateLimiter) prune(account jid.JID, now time.Time, keep time.Duration) []time.Time {
	sends := r.sends[account]
	i := 0
	for i < len(sends) && now.Sub(sends[i]) >= keep {
		i++
	}
	if i > 0 {
		sends = append(sends[:0:0], sends[i:]...)
		r.sends[account] = sends
	}
	return sends
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1, for retry_after.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
