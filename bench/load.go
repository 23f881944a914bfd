package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tracker matches arrivals to sends by the message body, which names the direction,
// the pair and the message's number ("bench m2m 3 41").
type tracker struct {
	pending sync.Map // body -> time.Time
	lat     Latencies
	windows []chan struct{}
	arrived atomic.Int64
	last    atomic.Int64 // unix nanos of the latest arrival
}

func newTracker(pairs, window int) *tracker {
	t := &tracker{windows: make([]chan struct{}, pairs)}
	for i := range t.windows {
		t.windows[i] = make(chan struct{}, window)
	}
	return t
}

// messageBody names one benchmark message.
func messageBody(dir string, pair, n int) string {
	return fmt.Sprintf("bench %s %d %d", dir, pair, n)
}

// parseBody returns the direction and pair of a benchmark message body.
func parseBody(body string) (dir string, pair int, ok bool) {
	fields := strings.Fields(body)
	if len(fields) != 4 || fields[0] != "bench" {
		return "", 0, false
	}
	pair, err := strconv.Atoi(fields[2])
	return fields[1], pair, err == nil
}

// arrive records a message's arrival at at; unknown and repeated bodies are ignored.
func (t *tracker) arrive(body string, at time.Time) {
	sent, ok := t.pending.LoadAndDelete(body)
	if !ok {
		return
	}
	t.lat.Add(at.Sub(sent.(time.Time)))
	t.arrived.Add(1)
	t.last.Store(at.UnixNano())
	if _, pair, ok := parseBody(body); ok && pair < len(t.windows) {
		select {
		case <-t.windows[pair]:
		default:
		}
	}
}

// phase is one direction's measurement: every pair sends count messages, with at
// most window of its own in flight, through send; arrivals come in through the
// tracker from the mode's watchers.
type phase struct {
	dir    string
	pairs  int
	count  int
	window int
	// stall ends the phase when nothing arrived for this long.
	stall time.Duration
	send  func(ctx context.Context, pair int, body string) error
	pid   int
	// hsPID, when set, is the homeserver's process, whose CPU time is read too.
	hsPID int
}

// run measures the phase. t receives the arrivals: the caller makes it with
// newTracker and points the watchers at it before the run.
func (p phase) run(ctx context.Context, t *tracker, mode string) (DirectionResult, error) {
	res := DirectionResult{Mode: mode, Direction: p.dir, Users: p.pairs}
	start, err := ReadProc(p.pid)
	if err != nil {
		return res, err
	}
	self := os.Getpid()
	selfStart, err := ReadProc(self)
	if err != nil {
		return res, err
	}
	var hsStart ProcSample
	if p.hsPID != 0 {
		if hsStart, err = ReadProc(p.hsPID); err != nil {
			return res, err
		}
	}
	t.last.Store(start.At.UnixNano())
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	for pair := range p.pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range p.count {
				select {
				case t.windows[pair] <- struct{}{}:
				case <-sendCtx.Done():
					return
				}
				body := messageBody(p.dir, pair, n)
				t.pending.Store(body, time.Now())
				// Each send runs on its own, so that a slow answer (Synapse's to a
				// client's send) does not hold back the rest of the window.
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := p.send(sendCtx, pair, body); err != nil {
						t.pending.Delete(body)
						<-t.windows[pair]
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
						return
					}
					sent.Add(1)
				}()
			}
		}()
	}
	total := int64(p.pairs * p.count)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var stalled bool
	for t.arrived.Load()+failed.Load() < total {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
		if time.Since(time.Unix(0, t.last.Load())) > p.stall {
			stalled = true
			break
		}
	}
	end, err := ReadProc(p.pid)
	var hsEnd, selfEnd ProcSample
	if err == nil {
		selfEnd, err = ReadProc(self)
	}
	if err == nil && p.hsPID != 0 {
		hsEnd, err = ReadProc(p.hsPID)
	}
	stopSending()
	wg.Wait()
	if err != nil {
		return res, err
	}
	// A stalled phase ends at its last arrival, not a stall's length later.
	if last := time.Unix(0, t.last.Load()); stalled && last.After(start.At) {
		end.At = last
	}
	res.Sent = int(sent.Load())
	res.Fill(start, end, &t.lat)
	if res.Seconds > 0 {
		res.BenchCores = round((selfEnd.CPU-selfStart.CPU).Seconds()/res.Seconds, 3)
	}
	if p.hsPID != 0 && res.Arrived > 0 && res.Seconds > 0 {
		cpu := hsEnd.CPU - hsStart.CPU
		res.HomeserverCPUPerMs = round(float64(cpu)/float64(time.Millisecond)/float64(res.Arrived), 3)
		res.HomeserverCores = round(cpu.Seconds()/res.Seconds, 3)
	}
	if failed.Load() > 0 {
		return res, fmt.Errorf("%d of %d sends failed; first: %v", failed.Load(), total, firstErr.Load())
	}
	if stalled {
		return res, fmt.Errorf("only %d of %d messages arrived; nothing arrived for %s", res.Arrived, total, p.stall)
	}
	return res, nil
}
