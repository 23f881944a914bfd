package gateway

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/stanza"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim/gateway/internal/gwstore"
)

// pumpPage is how many queued stanzas the pump reads at once.
const pumpPage = 100

// deliver queues a message, receipt or notification for an endpoint (section 3.2):
// it stays queued until the endpoint acks it and is sent on every connection until
// then. An offline third-party account gets a push callback.
func (g *Gateway) deliver(ctx context.Context, endpoint jid.JID, n stanza.Node) error {
	frame, err := stanza.Marshal(n)
	if err != nil {
		return fmt.Errorf("failed to encode %s: %w", n, err)
	}
	typ := ""
	if n.Tag != "message" {
		// Acks echo the type of receipts and notifications, never of messages.
		typ = n.Attr("type")
	}
	_, err = g.st.Enqueue(ctx, endpoint, gwstore.QueueItem{
		Class:       n.Tag,
		ID:          n.Attr("id"),
		Type:        typ,
		From:        n.Attr("from"),
		Participant: n.Attr("participant"),
		Frame:       frame,
		CreatedAt:   g.now(),
	}, g.cfg.Limits.QueueMax)
	if err != nil {
		return err
	}
	if s := g.live(endpoint); s != nil {
		s.poke()
	} else if endpoint.IsInterop() {
		g.pushes.schedule(endpoint)
	}
	return nil
}

// sendLive writes a stanza that is never stored or acked (chatstates) to every live
// session among endpoints.
func (g *Gateway) sendLive(endpoints []jid.JID, n stanza.Node) {
	for _, e := range endpoints {
		if s := g.live(e); s != nil {
			_ = s.write(n)
		}
	}
}

// pump sends the endpoint's queue in order: first what was queued before the
// connection (up to offlineMax), then <ib><offline count/></ib>, then everything
// queued later as it comes. What is sent stays queued until acked, so the next
// connection sends the unacked part again.
func (s *session) pump(offlineMax int64, offlineCount int) {
	var last int64
	offlineDone := false
	finishOffline := func() bool {
		offlineDone = true
		return s.write(stanza.Node{Tag: "ib", Content: []stanza.Node{{Tag: "offline",
			Attrs: stanza.Attrs{"count": strconv.Itoa(offlineCount)}}}}) == nil
	}
	for s.ctx.Err() == nil {
		items, err := s.g.st.QueueAfter(s.ctx, s.endpoint, last, pumpPage)
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Err(err).Msg("Failed to read queue, dropping connection")
				s.closeNow()
			}
			return
		}
		if len(items) == 0 {
			if !offlineDone && !finishOffline() {
				return
			}
			select {
			case <-s.wake:
			case <-s.ctx.Done():
				return
			}
			continue
		}
		if !offlineDone {
			// The offline marker goes right after the last stanza queued before the
			// connection; later ones wait for the next round.
			cut := len(items)
			for i, it := range items {
				if it.Seq > offlineMax {
					cut = i
					break
				}
			}
			if cut == 0 {
				if !finishOffline() {
					return
				}
				continue
			}
			items = items[:cut]
		}
		if n := s.g.faults.reorderPending(s.endpoint); n > 0 {
			items = s.collectForReorder(items, n, last)
		}
		for _, it := range items {
			if err := s.sendQueued(it); err != nil {
				return
			}
			last = max(last, it.Seq)
		}
	}
}

// sendQueued writes one queued stanza, twice under the duplicate fault.
func (s *session) sendQueued(it gwstore.QueueItem) error {
	if err := s.writeFrame(it.Frame); err != nil {
		return err
	}
	if s.g.faults.takeDuplicate(s.endpoint) {
		return s.writeFrame(it.Frame)
	}
	return nil
}

// collectForReorder waits up to Limits.ReorderWindow for n stanzas and returns the
// first n of them in reverse order, followed by the rest in order.
func (s *session) collectForReorder(items []gwstore.QueueItem, n int, last int64) []gwstore.QueueItem {
	deadline := time.NewTimer(s.g.cfg.Limits.ReorderWindow)
	defer deadline.Stop()
	for len(items) < n {
		select {
		case <-s.wake:
		case <-deadline.C:
			n = len(items)
			continue
		case <-s.ctx.Done():
			return items
		}
		after := last
		if len(items) > 0 {
			after = items[len(items)-1].Seq
		}
		more, err := s.g.st.QueueAfter(s.ctx, s.endpoint, after, n-len(items))
		if err != nil {
			return items
		}
		items = append(items, more...)
	}
	n = min(n, len(items))
	head := slices.Clone(items[:n])
	slices.Reverse(head)
	s.g.faults.consumeReorder(s.endpoint, n)
	return append(head, items[n:]...)
}

// QueueDepth is the number of stanzas waiting for an endpoint's ack.
func (g *Gateway) QueueDepth(ctx context.Context, endpoint jid.JID) (int, error) {
	count, _, err := g.st.QueueStats(ctx, endpoint)
	return count, err
}

// pusher makes the push callbacks (section 9) for offline accounts: at most one per
// account per Limits.PushInterval, with the number of pending stanzas at push time.
type pusher struct {
	g  *Gateway
	mu sync.Mutex
	// last push time and pending timer per account
	last    map[jid.JID]time.Time
	timers  map[jid.JID]*time.Timer
	stopped bool
}

func newPusher(g *Gateway) *pusher {
	return &pusher{g: g, last: make(map[jid.JID]time.Time), timers: make(map[jid.JID]*time.Timer)}
}

// schedule arranges a push for account unless one is already due.
func (p *pusher) schedule(account jid.JID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.timers[account] != nil {
		return
	}
	wait := time.Until(p.last[account].Add(p.g.cfg.Limits.PushInterval))
	p.timers[account] = time.AfterFunc(max(wait, 0), func() { p.fire(account) })
}

func (p *pusher) fire(account jid.JID) {
	if !p.g.track() {
		return
	}
	defer p.g.wg.Done()
	p.mu.Lock()
	delete(p.timers, account)
	p.last[account] = time.Now()
	p.mu.Unlock()
	if p.g.live(account) != nil {
		return
	}
	ctx := p.g.ctx
	log := p.g.log.With().Stringer("account", account).Logger()
	pending, _, err := p.g.st.QueueStats(ctx, account)
	if err != nil || pending == 0 {
		return
	}
	integratorID, _ := account.IntegratorID()
	in, ok := p.g.integrators[integratorID]
	if !ok || in.CallbackBase == "" {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, p.g.cfg.Limits.HandshakeTimeout)
	defer cancel()
	if err := p.g.callbacks.Push(pctx, in.CallbackBase, in.CallbackSecret, account.String(), pending); err != nil {
		log.Warn().Err(err).Msg("Push callback failed")
		return
	}
	log.Debug().Int("pending", pending).Msg("Pushed")
}

func (p *pusher) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	for _, t := range p.timers {
		t.Stop()
	}
}
