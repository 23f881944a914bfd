package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
)

// groupCases are the sub-benchmarks of interop/'s BenchmarkGroupSend, in the order
// the table shows them.
var groupCases = []struct{ name, label string }{
	{"first", "first message (512 new sessions)"},
	{"cold", "cold (new sender key, 512 distributions)"},
	{"warm", "warm (skmsg only)"},
	{"after-removal", "after a removal (510 distributions)"},
}

// GroupPattern selects interop/'s group send benchmark on one store ("sqlite" or
// "postgres"): one message to a group of 256 simulated users with 2 devices each.
func GroupPattern(store string) string {
	return "^BenchmarkGroupSend$/^" + store + "$"
}

// GroupResult is one case of the group send benchmark: averages per send.
type GroupResult struct {
	Store string `json:"store"`
	Case  string `json:"case"`
	Sends int    `json:"sends"`
	// SendMs is the whole SendGroupMessage call, which returns after the gateway's
	// ack. ClientMs is the sender's own part of it: until it wrote the message frame,
	// plus AfterAckMs from the ack to the return (recording the key's holders). AckMs
	// is from the frame to the ack (metasim queuing the message for every device).
	// DeliverMs runs until every member device's delivery receipt reached the sender.
	SendMs     float64 `json:"send_ms"`
	ClientMs   float64 `json:"client_ms"`
	AfterAckMs float64 `json:"after_ack_ms"`
	AckMs      float64 `json:"ack_ms"`
	DeliverMs  float64 `json:"deliver_all_ms"`
	// StanzaBytes is the message stanza as encoded; OutBytes and InBytes every frame
	// written and read until it was written (iqs of the first send included).
	StanzaBytes   float64 `json:"stanza_bytes"`
	OutBytes      float64 `json:"out_bytes"`
	InBytes       float64 `json:"in_bytes"`
	Distributions float64 `json:"distributions"`
	// PreKeyMs and USyncMs are the round trips of the prekey fetch and the device list
	// query inside the first send.
	PreKeyMs float64 `json:"prekey_fetch_ms,omitempty"`
	USyncMs  float64 `json:"usync_ms,omitempty"`
	Retries  float64 `json:"retries,omitempty"`
}

// RunGroup runs the group send benchmark on store in repoRoot and parses its lines.
func RunGroup(ctx context.Context, repoRoot, store, benchtime string) ([]GroupResult, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-tags", "goolm", "-run", "^$", "-bench", GroupPattern(store),
		"-benchtime", benchtime, "-count", "1", "-timeout", "30m", "./interop/")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("failed to run the group send benchmark: %w: %s", err, lastLines(out, 5))
	}
	res := ParseGroupBench(out)
	if len(res) != len(groupCases) {
		return res, fmt.Errorf("the group send benchmark printed %d of %d cases: %s", len(res), len(groupCases), lastLines(out, 5))
	}
	return res, nil
}

// ParseGroupBench reads BenchmarkGroupSend's lines ("BenchmarkGroupSend/sqlite/cold-2
// 3  2949248340 ns/op  3293 deliver-ms  512.0 dist ..."), with their custom metrics.
func ParseGroupBench(out []byte) []GroupResult {
	var res []GroupResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "BenchmarkGroupSend/") {
			continue
		}
		name := gomaxprocsSuffix.ReplaceAllString(strings.TrimPrefix(fields[0], "BenchmarkGroupSend/"), "")
		store, cs, ok := strings.Cut(name, "/")
		if !ok {
			continue
		}
		sends, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		r := GroupResult{Store: store, Case: cs, Sends: sends}
		metrics := map[string]*float64{"ms/send": &r.SendMs, "client-ms": &r.ClientMs, "after-ack-ms": &r.AfterAckMs, "ack-ms": &r.AckMs,
			"deliver-ms": &r.DeliverMs, "stanza-B": &r.StanzaBytes, "out-B": &r.OutBytes, "in-B": &r.InBytes,
			"dist": &r.Distributions, "prekey-ms": &r.PreKeyMs, "usync-ms": &r.USyncMs, "retries": &r.Retries}
		seen := false
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			if p, ok := metrics[fields[i+1]]; ok {
				*p, seen = v, true
			}
		}
		if seen {
			res = append(res, r)
		}
	}
	return res
}

const groupNote = "group: interop/'s BenchmarkGroupSend, metasim's gateway and 256 simulated WhatsApp users with 2 " +
	"devices each in the bench's test process, one third-party sender over WebSocket+Noise. send ms is the whole call, " +
	"which returns after the gateway's ack: client ms, the sender's own work (device lists, prekeys and sessions for the " +
	"first message, encryption, the store transaction, encoding; after the ack, recording which devices hold the key), " +
	"plus gateway ack ms, metasim queuing the message for each device while the devices already decrypt on the same " +
	"cores. deliver-all ms runs until the last device's delivery receipt reached the sender. Bytes are the stanza as " +
	"encoded, before Noise (16 bytes a frame) and WebSocket framing."

// printGroup writes the group send table.
func (r *Report) printGroup(w io.Writer) {
	if len(r.Group) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "group send, 256 members × 2 devices\tstore\tsends\tsend ms\tclient ms\tof which after ack\tgateway ack ms\tdeliver-all ms\tstanza B\tout B\tin B\tdistributions\tprekey fetch ms\tusync ms\t")
	for _, c := range groupCases {
		for _, g := range r.Group {
			if g.Case != c.name {
				continue
			}
			opt := func(v float64) string {
				if v == 0 {
					return "-"
				}
				return fmt.Sprintf("%.1f", v)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t\n", c.label, g.Store, g.Sends,
				g.SendMs, g.ClientMs, g.AfterAckMs, g.AckMs, g.DeliverMs, g.StanzaBytes, g.OutBytes, g.InBytes, g.Distributions,
				opt(g.PreKeyMs), opt(g.USyncMs))
		}
	}
	_ = tw.Flush()
}
