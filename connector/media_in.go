package connector

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop"
)

// mediaConnCache holds one login's media_conn (PROTOCOL.md section 7) until its TTL,
// so that a burst of media costs one iq. The zero value is ready; fetch is what asks
// the gateway. Safe for concurrent use: callers wait for one fetch rather than each
// sending their own.
type mediaConnCache struct {
	mu   sync.Mutex
	conn interop.MediaConn
}

// get returns the cached media_conn, fetching a new one when there is none, it
// expired, or the caller saw the hosts refuse stale (the auth they were given).
func (c *mediaConnCache) get(ctx context.Context, fetch func(context.Context) (interop.MediaConn, error), now time.Time, stale string) (interop.MediaConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.conn.Expired(now) && (stale == "" || c.conn.Auth != stale) {
		return c.conn, nil
	}
	conn, err := fetch(ctx)
	if err != nil {
		return interop.MediaConn{}, fmt.Errorf("failed to fetch media_conn: %w", err)
	}
	c.conn = conn
	return conn, nil
}
