package kit

import (
	"context"

	"maunium.net/go/mautrix/event"
)

// EventsAfter returns the events received after mark, the mark after them, and a
// channel closed when more arrive: for a watcher that must see every event once, as
// the benchmarks' arrival timers do.
func (u *User) EventsAfter(mark int) ([]*event.Event, int, <-chan struct{}) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if mark > len(u.events) {
		mark = len(u.events)
	}
	out := make([]*event.Event, len(u.events)-mark)
	copy(out, u.events[mark:])
	return out, len(u.events), u.changed
}

// PID is Synapse's process id (the Python process; chroot execs it), or 0.
func (s *Synapse) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// FreshPostgres creates an empty database on a PostgreSQL server and returns its
// DSN and a function that drops it, for a bridge started outside StartStack.
func FreshPostgres(ctx context.Context, serverDSN string) (string, func(), error) {
	return freshPostgres(ctx, serverDSN)
}
