package gateway

import (
	"sync"
	"time"

	"github.com/matrix-meta-interop/matrix-meta-interop/interop/jid"
)

// Faults breaks the gateway on purpose for one endpoint at a time (PROTOCOL.md
// Appendix): the control API and tests use it to see how clients cope. Endpoints are
// device JIDs (a third-party account is its user JID). Faults live in memory only.
type Faults struct {
	g  *Gateway
	mu sync.Mutex
	by map[jid.JID]*endpointFaults
}

type endpointFaults struct {
	delay      time.Duration
	duplicate  int
	reorder    int
	refuse     int
	refuseCode int
	refuseWhy  string
	noPings    bool
}

// forcedRefusal is a forced refusal of a sent message.
type forcedRefusal struct {
	Code   int
	Reason string
}

func newFaults() *Faults { return &Faults{by: make(map[jid.JID]*endpointFaults)} }

func (f *Faults) get(endpoint jid.JID) *endpointFaults {
	ef := f.by[endpoint]
	if ef == nil {
		ef = &endpointFaults{}
		f.by[endpoint] = ef
	}
	return ef
}

// DropConnection cuts the endpoint's live connection without a goodbye, as a network
// failure would. It reports whether there was one.
func (f *Faults) DropConnection(endpoint jid.JID) bool {
	s := f.g.live(endpoint)
	if s == nil {
		return false
	}
	s.closeNow()
	return true
}

// DelayStanzas delays every frame the gateway sends to the endpoint by d (0 ends it).
func (f *Faults) DelayStanzas(endpoint jid.JID, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(endpoint).delay = max(d, 0)
}

// DuplicateNext sends each of the next n queued stanzas (messages, receipts,
// notifications) to the endpoint twice.
func (f *Faults) DuplicateNext(endpoint jid.JID, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(endpoint).duplicate = max(n, 0)
}

// ReorderNext sends the next n queued stanzas to the endpoint in reverse order (it
// waits up to Limits.ReorderWindow for them to arrive; fewer are reversed if fewer
// came).
func (f *Faults) ReorderNext(endpoint jid.JID, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(endpoint).reorder = max(n, 0)
}

// RefuseNextSends refuses the endpoint's next n messages with
// <ack error="code" [reason]/>.
func (f *Faults) RefuseNextSends(endpoint jid.JID, n int, code int, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ef := f.get(endpoint)
	ef.refuse, ef.refuseCode, ef.refuseWhy = max(n, 0), code, reason
}

// StopAnsweringPings makes the gateway ignore the endpoint's pings (or answer them
// again), so the client's keep-alive must notice.
func (f *Faults) StopAnsweringPings(endpoint jid.JID, stop bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(endpoint).noPings = stop
}

// Clear removes every fault of the endpoint.
func (f *Faults) Clear(endpoint jid.JID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.by, endpoint)
}

func (f *Faults) delay(endpoint jid.JID) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ef := f.by[endpoint]; ef != nil {
		return ef.delay
	}
	return 0
}

func (f *Faults) takeDuplicate(endpoint jid.JID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ef := f.by[endpoint]; ef != nil && ef.duplicate > 0 {
		ef.duplicate--
		return true
	}
	return false
}

func (f *Faults) reorderPending(endpoint jid.JID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ef := f.by[endpoint]; ef != nil {
		return ef.reorder
	}
	return 0
}

func (f *Faults) consumeReorder(endpoint jid.JID, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ef := f.by[endpoint]; ef != nil {
		ef.reorder = max(ef.reorder-n, 0)
	}
}

func (f *Faults) takeRefusal(endpoint jid.JID) (forcedRefusal, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ef := f.by[endpoint]; ef != nil && ef.refuse > 0 {
		ef.refuse--
		return forcedRefusal{Code: ef.refuseCode, Reason: ef.refuseWhy}, true
	}
	return forcedRefusal{}, false
}

func (f *Faults) pingsStopped(endpoint jid.JID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	ef := f.by[endpoint]
	return ef != nil && ef.noPings
}
