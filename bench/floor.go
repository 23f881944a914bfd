package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// FloorPattern selects the interop/ benchmarks that make up one message's cost in
// the bridge without the network: outgoing (encode, encrypt, store, frame) and
// incoming (unframe, decrypt, store, decode), on memstore, SQLite and PostgreSQL.
const FloorPattern = "^Benchmark(OutgoingMessage|IncomingMessage)$"

// RunFloor runs the interop/ pipeline benchmarks in repoRoot and parses their lines.
func RunFloor(ctx context.Context, repoRoot, benchtime string) ([]FloorResult, []byte, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-tags", "goolm", "-run", "^$", "-bench", FloorPattern,
		"-benchmem", "-benchtime", benchtime, "-count", "1", "./interop/")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, out, fmt.Errorf("failed to run the interop/ benchmarks: %w", err)
	}
	res := ParseBenchOutput(out)
	if len(res) == 0 {
		return nil, out, fmt.Errorf("the interop/ benchmarks printed no results")
	}
	return res, out, nil
}

var gomaxprocsSuffix = regexp.MustCompile(`-\d+$`)

// ParseBenchOutput reads `go test -bench` lines ("BenchmarkX/sub-2  N  123 ns/op
// 45 B/op  6 allocs/op"), dropping the GOMAXPROCS suffix from the name.
func ParseBenchOutput(out []byte) []FloorResult {
	var res []FloorResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		r := FloorResult{Name: gomaxprocsSuffix.ReplaceAllString(strings.TrimPrefix(fields[0], "Benchmark"), "")}
		ok := false
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			switch fields[i+1] {
			case "ns/op":
				r.NsPerOp, ok = v, true
			case "B/op":
				r.BytesPerOp = v
			case "allocs/op":
				r.AllocsPerOp = v
			}
		}
		if ok {
			res = append(res, r)
		}
	}
	return res
}

// FloorPerMessage sums the outgoing and incoming ns/op on one store ("sqlite"), the
// bridge's floor for one message each way; 0 when either is missing.
func FloorPerMessage(floor []FloorResult, store string) (out, in float64) {
	for _, f := range floor {
		switch f.Name {
		case "OutgoingMessage/" + store:
			out = f.NsPerOp
		case "IncomingMessage/" + store:
			in = f.NsPerOp
		}
	}
	return out, in
}
