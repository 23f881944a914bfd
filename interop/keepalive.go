package interop

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
)

// pingIQ is the keep-alive of PROTOCOL.md section 3.1.
func pingIQ() stanza.Node {
	return stanza.Node{
		Tag:     "iq",
		Attrs:   stanza.Attrs{"id": NewID(), "type": "get", "xmlns": "w:p", "to": jid.ServerGateway},
		Content: []stanza.Node{{Tag: "ping"}},
	}
}

// pinger sends a ping every PingInterval. An unanswered ping drops the connection
// (sendIQOn does that on timeout); an error answer still proves the link is alive.
func (c *Client) pinger(cn *conn) {
	ticker := time.NewTicker(c.cfg.PingInterval)
	defer ticker.Stop()
	for {
		select {
		case <-cn.ctx.Done():
			return
		case <-ticker.C:
		}
		_, err := c.sendIQOn(cn.ctx, cn, pingIQ())
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrDisconnected) {
			zerolog.Ctx(cn.ctx).Debug().Err(err).Msg("Keep-alive ping failed")
		}
	}
}

// watchIdle drops a connection that delivered no frame for IdleTimeout. A socket can
// stay open while the path behind it is dead, and pings alone would notice only after
// IQTimeout on a connection that does answer something; this catches both.
func (c *Client) watchIdle(cn *conn) {
	timer := time.NewTimer(c.cfg.IdleTimeout)
	defer timer.Stop()
	for {
		select {
		case <-cn.ctx.Done():
			return
		case <-timer.C:
		}
		idle := cn.sinceLastFrame()
		if idle >= c.cfg.IdleTimeout {
			cn.drop(ErrIdleTimeout)
			return
		}
		timer.Reset(c.cfg.IdleTimeout - idle)
	}
}
