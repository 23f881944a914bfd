package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"
)

// The modes a figure can come from.
const (
	// ModeStack is the real Synapse, metasim and the bridge process.
	ModeStack = "stack"
	// ModeLoadgen is metasim and the bridge process with a load generator playing
	// the homeserver side of the appservice API instead of Synapse.
	ModeLoadgen = "loadgen"
)

// The directions.
const (
	MatrixToMeta = "matrix_to_meta"
	MetaToMatrix = "meta_to_matrix"
)

// Report is one run's figures, printed as a table and written as JSON.
type Report struct {
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	Host       Host              `json:"host"`
	Settings   map[string]any    `json:"settings"`
	Throughput []DirectionResult `json:"throughput"`
	Memory     []MemoryResult    `json:"memory"`
	Idle       []IdleResult      `json:"idle,omitempty"`
	Floor      []FloorResult     `json:"floor"`
	// Media are the files moved in media mode, one row per direction and size (the
	// median round), MediaRounds every round, and MediaCrypto the bare
	// interop/mediacrypt speeds they are held against.
	Media       []MediaResult  `json:"media,omitempty"`
	MediaRounds []MediaResult  `json:"media_rounds,omitempty"`
	MediaCrypto []CryptoResult `json:"media_crypto,omitempty"`
	// Group is interop/'s group send benchmark (group mode), one row per case.
	Group []GroupResult `json:"group,omitempty"`
	// FloorStore is the interop/ store matching the bridge's database, for the notes.
	FloorStore string   `json:"floor_store"`
	Notes      []string `json:"notes,omitempty"`
	Errors     []string `json:"errors,omitempty"`
}

// Host describes the machine.
type Host struct {
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
}

// CurrentHost describes this machine.
func CurrentHost() Host {
	return Host{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
}

// DirectionResult is one direction's sustained rate and latency in one mode.
type DirectionResult struct {
	Mode      string `json:"mode"`
	Direction string `json:"direction"`
	// Users is how many Matrix users (and as many simulated Meta users) took part.
	Users    int            `json:"users"`
	Sent     int            `json:"sent"`
	Arrived  int            `json:"arrived"`
	Seconds  float64        `json:"seconds"`
	PerSec   float64        `json:"messages_per_second"`
	Latency  LatencySummary `json:"latency"`
	CPUPerMs float64        `json:"bridge_cpu_ms_per_message"`
	// CPUShare is the bridge's CPU time over the wall time, in cores.
	CPUShare float64 `json:"bridge_cpu_cores"`
	// PerCore is what one core would sustain at this CPU time per message
	// (1000 / CPUPerMs): the bridge's ceiling by CPU, whatever else runs on the machine.
	PerCore  float64 `json:"messages_per_second_per_bridge_core"`
	RSSBytes int64   `json:"bridge_rss_bytes"`
	// The homeserver's CPU time per message and over the wall time (stack mode:
	// Synapse's process).
	HomeserverCPUPerMs float64 `json:"homeserver_cpu_ms_per_message,omitempty"`
	HomeserverCores    float64 `json:"homeserver_cpu_cores,omitempty"`
	// BenchCores is the bench process's CPU over the wall time: metasim (the
	// simulated Meta users and gateway), the Matrix clients or the load generator.
	BenchCores float64 `json:"bench_process_cpu_cores"`
}

// IdleResult is the CPU the processes use with the users set up and nothing sent.
type IdleResult struct {
	Mode            string  `json:"mode"`
	Seconds         float64 `json:"seconds"`
	BridgeCores     float64 `json:"bridge_cpu_cores"`
	HomeserverCores float64 `json:"homeserver_cpu_cores"`
}

// MemoryResult is the bridge's resident memory with a number of connected logins.
type MemoryResult struct {
	Mode     string `json:"mode"`
	Logins   int    `json:"logins"`
	RSSBytes int64  `json:"bridge_rss_bytes"`
	// BaselineBytes is the RSS with no login; PerLoginBytes is the growth over it
	// divided by Logins.
	BaselineBytes int64 `json:"baseline_rss_bytes"`
	PerLoginBytes int64 `json:"rss_bytes_per_login"`
}

// FloorResult is one interop/ benchmark: the per-message floor without the network.
type FloorResult struct {
	Name        string  `json:"name"`
	NsPerOp     float64 `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op,omitempty"`
	AllocsPerOp float64 `json:"allocs_per_op,omitempty"`
}

// Fill computes the derived fields from the raw counts.
func (d *DirectionResult) Fill(start, end ProcSample, lat *Latencies) {
	d.Latency = lat.Summary()
	d.Arrived = d.Latency.Count
	d.Seconds = round(end.At.Sub(start.At).Seconds(), 3)
	if d.Seconds > 0 {
		d.PerSec = round(float64(d.Arrived)/d.Seconds, 1)
		d.CPUShare = round((end.CPU-start.CPU).Seconds()/d.Seconds, 3)
	}
	if d.Arrived > 0 {
		d.CPUPerMs = round(float64(end.CPU-start.CPU)/float64(time.Millisecond)/float64(d.Arrived), 3)
	}
	if d.CPUPerMs > 0 {
		d.PerCore = round(1000/d.CPUPerMs, 0)
	}
	d.RSSBytes = end.RSSBytes
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// WriteJSON writes the report into dir as <timestamp>.json and returns the path.
func (r *Report) WriteJSON(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("failed to make the results folder: %w", err)
	}
	path := filepath.Join(dir, r.StartedAt.UTC().Format("20060102T150405Z")+".json")
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("failed to write the results: %w", err)
	}
	return path, nil
}

// modeLabel says plainly where a figure comes from.
func modeLabel(mode string) string {
	switch mode {
	case ModeStack:
		return "stack (real Synapse)"
	case ModeLoadgen:
		return "loadgen (fake homeserver)"
	}
	return mode
}

func directionLabel(dir string) string {
	switch dir {
	case MatrixToMeta:
		return "Matrix → Meta"
	case MetaToMatrix:
		return "Meta → Matrix"
	}
	return dir
}

// Print writes the report as readable tables.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "Bridge benchmark, %s, %d CPUs, %s\n", r.StartedAt.UTC().Format(time.RFC3339), r.Host.CPUs, r.Host.GoVersion)
	if len(r.Throughput) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tdirection\tusers\tsent\tarrived\tmsg/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\tbridge CPU ms/msg\tmsg/s per bridge core\tbridge cores\tbridge RSS MiB\tSynapse CPU ms/msg\tSynapse cores\tmetasim+bench cores\t")
		for _, d := range r.Throughput {
			hsPer, hsCores := "-", "-"
			if d.HomeserverCores > 0 {
				hsPer, hsCores = fmt.Sprintf("%.2f", d.HomeserverCPUPerMs), fmt.Sprintf("%.3f", d.HomeserverCores)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.3f\t%.0f\t%.3f\t%.1f\t%s\t%s\t%.3f\t\n",
				modeLabel(d.Mode), directionLabel(d.Direction), d.Users, d.Sent, d.Arrived, d.PerSec,
				d.Latency.P50ms, d.Latency.P95ms, d.Latency.P99ms, d.Latency.MaxMs, d.CPUPerMs, d.PerCore, d.CPUShare, mib(d.RSSBytes), hsPer, hsCores, d.BenchCores)
		}
		_ = tw.Flush()
	}
	if len(r.Memory) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tconnected logins\tbridge RSS MiB\tbaseline MiB\tKiB per login\t")
		for _, m := range r.Memory {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t\n", modeLabel(m.Mode), m.Logins, mib(m.RSSBytes), mib(m.BaselineBytes), float64(m.PerLoginBytes)/1024)
		}
		_ = tw.Flush()
	}
	if len(r.Floor) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "interop/ floor (no network)\tµs/op\tB/op\tallocs/op\t")
		for _, f := range r.Floor {
			fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t\n", f.Name, f.NsPerOp/1000, f.BytesPerOp, f.AllocsPerOp)
		}
		_ = tw.Flush()
	}
	r.printMedia(w)
	r.printGroup(w)
	for _, i := range r.Idle {
		fmt.Fprintf(w, "\nidle (%s, users set up, nothing sent, %.0f s): bridge %.3f cores, Synapse %.3f cores\n",
			modeLabel(i.Mode), i.Seconds, i.BridgeCores, i.HomeserverCores)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\nnote: %s\n", n)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nerror: %s\n", e)
	}
	fmt.Fprintln(w)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// AddNotes explains where the figures come from, and sets the floor next to the
// whole-stack cost per message.
func (r *Report) AddNotes() {
	modes := map[string]bool{}
	for _, d := range r.Throughput {
		modes[d.Mode] = true
	}
	if modes[ModeStack] {
		r.Notes = append(r.Notes, "stack: the kit's real Synapse (one Python process, SQLite), metasim and the bridge process on "+
			"this machine; rates there are bounded by Synapse (see its CPU per message), not the bridge. Latency: Matrix→Meta "+
			"from the client's send to the simulated device's receipt of the decrypted message; Meta→Matrix from the simulated "+
			"user's send to the event reaching the Matrix user's /sync.")
	}
	if modes[ModeLoadgen] {
		r.Notes = append(r.Notes, "loadgen: the bridge's own ceiling. A load generator in the bench process plays the "+
			"homeserver (pushes appservice transactions of one event each, answers the bridge's client-server calls from "+
			"memory); metasim and the load generator share the machine's cores with the bridge, so msg/s per bridge core is the "+
			"figure to compare across machines. Latency: Matrix→Meta from the transaction push to the "+
			"simulated device's receipt; Meta→Matrix from the simulated user's send to the bridge's PUT /send.")
	}
	if len(r.Memory) > 0 {
		r.Notes = append(r.Notes, "memory: resident set (VmRSS) of a fresh bridge with the fake homeserver, read 5 s after the "+
			"logins connected, without chats or traffic; per login = (RSS - RSS with no login) / logins.")
	}
	if len(r.Media) > 0 {
		r.Notes = append(r.Notes, mediaNote)
	}
	if len(r.Group) > 0 {
		r.Notes = append(r.Notes, groupNote)
	}
	if out, in := FloorPerMessage(r.Floor, r.FloorStore); out > 0 && in > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("interop/ floor on %s (the bridge's database here): %.3f ms per outgoing "+
			"message, %.3f ms per incoming (time per op of one goroutine), without network, HTTP, bridgev2 or its database; "+
			"compare with the bridge CPU ms/msg above.",
			r.FloorStore, out/1e6, in/1e6))
	}
}
