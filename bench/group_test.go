package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseGroupBench(t *testing.T) {
	out := []byte(`goos: linux
pkg: github.com/matrix-meta-interop/matrix-meta-interop/interop
BenchmarkGroupSend/sqlite/first-2   	       1	5646896808 ns/op	      3770 ack-ms	      12.5 after-ack-ms	      1877 client-ms	      5667 deliver-ms	       512.0 dist	    260590 in-B	      5647 ms/send	    250767 out-B	       324.1 prekey-ms	    218474 stanza-B	       216.1 usync-ms
BenchmarkGroupSend/sqlite/warm-2    	       3	2399355038 ns/op	      2397 ack-ms	         2.560 client-ms	      2752 deliver-ms	         0 dist	         0 in-B	      2399 ms/send	       353.0 out-B	       353.0 stanza-B
BenchmarkGroupSend/postgres/cold    	       3	3431524221 ns/op	      3307 ack-ms	       124.5 client-ms	      3452 deliver-ms	       512.0 dist	         0 in-B	      3432 ms/send	    206206 out-B	    206206 stanza-B	  1.000 retries
BenchmarkGroupSend/sqlite-2         	       1	     1 ns/op
BenchmarkOutgoingMessage/sqlite-2	    5000	    250000 ns/op
--- FAIL: BenchmarkGroupSend/sqlite
PASS
`)
	got := ParseGroupBench(out)
	want := []GroupResult{
		{Store: "sqlite", Case: "first", Sends: 1, SendMs: 5647, ClientMs: 1877, AfterAckMs: 12.5, AckMs: 3770, DeliverMs: 5667, StanzaBytes: 218474,
			OutBytes: 250767, InBytes: 260590, Distributions: 512, PreKeyMs: 324.1, USyncMs: 216.1},
		{Store: "sqlite", Case: "warm", Sends: 3, SendMs: 2399, ClientMs: 2.56, AckMs: 2397, DeliverMs: 2752, StanzaBytes: 353, OutBytes: 353},
		{Store: "postgres", Case: "cold", Sends: 3, SendMs: 3432, ClientMs: 124.5, AckMs: 3307, DeliverMs: 3452, StanzaBytes: 206206,
			OutBytes: 206206, Distributions: 512, Retries: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v (other benchmarks and the store's own line are left out)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestPrintGroupOrdersCases(t *testing.T) {
	r := &Report{Group: []GroupResult{
		{Store: "sqlite", Case: "warm", Sends: 3, SendMs: 2399, ClientMs: 2.56, StanzaBytes: 353},
		{Store: "sqlite", Case: "first", Sends: 1, SendMs: 5647, ClientMs: 1877, StanzaBytes: 218474, Distributions: 512, PreKeyMs: 324.1},
	}}
	var buf bytes.Buffer
	r.printGroup(&buf)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", buf.String())
	}
	if !strings.HasPrefix(strings.TrimSpace(lines[1]), "first message") || !strings.Contains(lines[1], "324.1") ||
		!strings.Contains(lines[1], "218474") {
		t.Errorf("first row %q: want the first send with its prekey fetch and its 218474-byte stanza", lines[1])
	}
	f := strings.Fields(lines[2])
	if f[0] != "warm" || f[len(f)-2] != "-" || f[len(f)-1] != "-" {
		t.Errorf("warm row %q: want no prekey fetch or usync figures", lines[2])
	}
}
