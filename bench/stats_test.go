package bench

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", []time.Duration{7}, 99, 7},
		{"median of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p95 of 1..100", hundred, 95, 95 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100", hundred, 100, 100 * time.Millisecond},
		{"p99 of 3 is the max", []time.Duration{1, 2, 3}, 99, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarizeSortsAndRounds(t *testing.T) {
	s := Summarize([]time.Duration{3 * time.Millisecond, 1 * time.Millisecond, 2500 * time.Microsecond})
	want := LatencySummary{Count: 3, P50ms: 2.5, P95ms: 3, P99ms: 3, MaxMs: 3}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
}

func TestFill(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var lat Latencies
	for range 200 {
		lat.Add(10 * time.Millisecond)
	}
	d := DirectionResult{Sent: 200}
	d.Fill(ProcSample{At: t0, CPU: time.Second}, ProcSample{At: t0.Add(4 * time.Second), CPU: 3 * time.Second, RSSBytes: 42}, &lat)
	if d.PerSec != 50 || d.CPUPerMs != 10 || d.CPUShare != 0.5 || d.Arrived != 200 || d.RSSBytes != 42 {
		t.Errorf("got %+v", d)
	}
}

func TestParseBenchOutput(t *testing.T) {
	out := []byte(`goos: linux
BenchmarkOutgoingMessage/memstore-2         	   20000	     61234 ns/op	   12345 B/op	     123 allocs/op
BenchmarkOutgoingMessage/sqlite-2           	    5000	    250000 ns/op	         4.08 x-memstore	   20000 B/op	     300 allocs/op
BenchmarkIncomingMessage/sqlite-2           	    5000	    300000 ns/op	   20000 B/op	     300 allocs/op
PASS
`)
	res := ParseBenchOutput(out)
	if len(res) != 3 {
		t.Fatalf("got %d results: %+v", len(res), res)
	}
	if res[0] != (FloorResult{Name: "OutgoingMessage/memstore", NsPerOp: 61234, BytesPerOp: 12345, AllocsPerOp: 123}) {
		t.Errorf("first: %+v", res[0])
	}
	if res[1].Name != "OutgoingMessage/sqlite" || res[1].BytesPerOp != 20000 {
		t.Errorf("a custom metric in between: %+v", res[1])
	}
	out2, in := FloorPerMessage(res, "sqlite")
	if out2 != 250000 || in != 300000 {
		t.Errorf("floor per message %v %v", out2, in)
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("1234 (matrix (meta) x) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 12 0 100 0 0\n")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Errorf("cpu %v, %v", cpu, err)
	}
	rss, err := parseStatusRSS([]byte("Name:\tx\nVmRSS:\t   20480 kB\nThreads: 5\n"))
	if err != nil || rss != 20<<20 {
		t.Errorf("rss %v, %v", rss, err)
	}
}

func TestTrackerMatchesArrivalsOnce(t *testing.T) {
	tr := newTracker(2, 1)
	body := messageBody(MatrixToMeta, 1, 7)
	if dir, pair, ok := parseBody(body); !ok || dir != MatrixToMeta || pair != 1 {
		t.Fatalf("parseBody(%q) = %q %d %v", body, dir, pair, ok)
	}
	sent := time.Unix(100, 0)
	tr.windows[1] <- struct{}{}
	tr.pending.Store(body, sent)
	tr.arrive("hello, not a bench message", sent)
	tr.arrive(body, sent.Add(40*time.Millisecond))
	tr.arrive(body, sent.Add(90*time.Millisecond)) // a repeat (the inbox seen twice)
	if got := tr.lat.Summary(); got.Count != 1 || got.P50ms != 40 {
		t.Errorf("latencies %+v", got)
	}
	if len(tr.windows[1]) != 0 {
		t.Error("the arrival did not free the pair's window")
	}
}
