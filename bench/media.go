package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"maunium.net/go/mautrix/event"

	"github.com/matrix-meta-interop/matrix-meta-interop/config"
	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
	"github.com/matrix-meta-interop/matrix-meta-interop/interop/mediacrypt"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

// ModeMedia moves files of a few sizes each way through the real Synapse, metasim
// and the bridge process, one at a time.
const ModeMedia = "media"

// MediaCryptoPattern selects interop/mediacrypt's benchmarks: the bare streaming
// encryption and decryption (with hashing and MAC) the bridge's media throughput is
// held against.
const MediaCryptoPattern = "^Benchmark(Encrypt|Decrypt)$"

// The goals for media (issue 5).
const (
	// MediaPeakGoalBytes is the most the bridge's peak memory may grow for one file,
	// whatever its size.
	MediaPeakGoalBytes = 16 << 20
	// MediaRatioGoal is the share of the bare encryption speed the whole stack should
	// reach.
	MediaRatioGoal = 0.5
)

// MediaResult is one file moved one way.
type MediaResult struct {
	Mode      string `json:"mode"`
	Direction string `json:"direction"`
	Bytes     int64  `json:"bytes"`
	// Round is which round this file was (MediaRounds); in the summary rows
	// (Report.Media), Rounds is how many rounds it sums up.
	Round  int `json:"round,omitempty"`
	Rounds int `json:"rounds,omitempty"`
	// SenderSeconds is the sender's part before the bridge has anything to do:
	// Meta→Matrix, metasim encrypting the file and uploading it to Meta's media hosts
	// (until its control API answered the send); Matrix→Meta, the Matrix client's
	// upload to Synapse.
	SenderSeconds float64 `json:"sender_seconds"`
	// Seconds runs from the end of the sender's part to the arrival: Meta→Matrix, the
	// m.file event in the Matrix user's /sync; Matrix→Meta, the simulated device's
	// inbox showing the file fetched through Meta's proxy from the bridge and
	// verified. MBPerSec is Bytes over it.
	Seconds  float64 `json:"seconds"`
	MBPerSec float64 `json:"mb_per_second"`
	// TotalSeconds includes the sender's part; TotalMBPerSec is Bytes over it.
	TotalSeconds  float64 `json:"total_seconds"`
	TotalMBPerSec float64 `json:"total_mb_per_second"`
	// BridgeSeconds is the bridge's part. Matrix→Meta: from sending the m.file until
	// the simulated device received the message (by the inbox item's received_at):
	// the bridge downloaded the file from Synapse, encrypted and hosted it, and sent
	// the message. Meta→Matrix: the bridge's handling of the file by its log: fetching
	// it from Meta's media host, verifying, decrypting and uploading it to Synapse,
	// the upload being UploadSeconds. BridgeMBPerSec is Bytes over BridgeSeconds.
	BridgeSeconds  float64 `json:"bridge_seconds,omitempty"`
	BridgeMBPerSec float64 `json:"bridge_mb_per_second,omitempty"`
	UploadSeconds  float64 `json:"homeserver_upload_seconds,omitempty"`
	// HostSeconds (Matrix→Meta) is the part of BridgeSeconds the bridge's log times:
	// downloading the file from Synapse, encrypting and hosting it. The rest of
	// BridgeSeconds is Synapse passing the event on, and the message's way to the
	// device.
	HostSeconds float64 `json:"host_seconds,omitempty"`
	// FetchSeconds (Matrix→Meta) is the rest after BridgeSeconds: Meta's proxy
	// fetching the blob from the bridge's media host and the device decrypting and
	// verifying it (metasim, in the bench process).
	FetchSeconds float64 `json:"fetch_seconds,omitempty"`
	// DownloadSeconds (Meta→Matrix) is the Matrix client's download of the file
	// through Synapse's authenticated media API after the event, bytes checked.
	DownloadSeconds float64 `json:"download_seconds,omitempty"`
	// The bridge's resident memory before the file, its peak (VmHWM, reset through
	// clear_refs just before) and the growth, peak minus before.
	RSSBeforeBytes  int64 `json:"bridge_rss_before_bytes"`
	PeakBytes       int64 `json:"bridge_peak_bytes"`
	PeakGrowthBytes int64 `json:"bridge_peak_growth_bytes"`
	// BridgeCPUSeconds and HomeserverCPUSeconds are the processes' CPU time over
	// TotalSeconds.
	BridgeCPUSeconds     float64 `json:"bridge_cpu_seconds"`
	HomeserverCPUSeconds float64 `json:"homeserver_cpu_seconds"`
	// Bare is the interop/mediacrypt benchmark this direction's cryptography is held
	// against (Encrypt for Matrix→Meta, Decrypt for Meta→Matrix), its speed, and
	// MBPerSec over it.
	Bare         string  `json:"bare_benchmark,omitempty"`
	BareMBPerSec float64 `json:"bare_mb_per_second,omitempty"`
	RatioToBare  float64 `json:"ratio_to_bare,omitempty"`
}

// CryptoResult is one interop/mediacrypt benchmark.
type CryptoResult struct {
	Name     string  `json:"name"`
	NsPerOp  float64 `json:"ns_per_op"`
	MBPerSec float64 `json:"mb_per_second"`
}

// RunMediaCrypto runs interop/mediacrypt's benchmarks in repoRoot and parses them.
func RunMediaCrypto(ctx context.Context, repoRoot, benchtime string) ([]CryptoResult, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-tags", "goolm", "-run", "^$", "-bench", MediaCryptoPattern,
		"-benchtime", benchtime, "-count", "1", "./interop/mediacrypt/")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("failed to run the interop/mediacrypt benchmarks: %w: %s", err, lastLines(out, 5))
	}
	res := ParseCryptoBench(out)
	if len(res) == 0 {
		return nil, fmt.Errorf("the interop/mediacrypt benchmarks printed no MB/s")
	}
	return res, nil
}

func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// ParseCryptoBench reads `go test -bench` lines that report MB/s ("BenchmarkEncrypt/20MiB-2
// 50  22000000 ns/op  953.2 MB/s"), dropping the GOMAXPROCS suffix.
func ParseCryptoBench(out []byte) []CryptoResult {
	var res []CryptoResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		r := CryptoResult{Name: gomaxprocsSuffix.ReplaceAllString(strings.TrimPrefix(fields[0], "Benchmark"), "")}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			switch fields[i+1] {
			case "ns/op":
				r.NsPerOp = v
			case "MB/s":
				r.MBPerSec = v
			}
		}
		if r.MBPerSec > 0 {
			res = append(res, r)
		}
	}
	return res
}

// bareFor picks the mediacrypt benchmark to hold a transfer against: the operation
// the bridge does on the way (encrypting Matrix→Meta, decrypting Meta→Matrix) at the
// same size when it was measured, else at the largest size measured.
func bareFor(crypto []CryptoResult, direction string, size int64) (CryptoResult, bool) {
	op := "Decrypt"
	if direction == MatrixToMeta {
		op = "Encrypt"
	}
	var best CryptoResult
	var bestSize int64 = -1
	for _, c := range crypto {
		name, sub, ok := strings.Cut(c.Name, "/")
		if !ok || name != op {
			continue
		}
		n, ok := parseMiB(sub)
		if !ok {
			continue
		}
		if n == size {
			return c, true
		}
		if n > bestSize {
			best, bestSize = c, n
		}
	}
	return best, bestSize >= 0
}

// parseMiB reads a size like "20MiB" in bytes.
func parseMiB(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSuffix(s, "MiB"), 10, 64)
	if err != nil || !strings.HasSuffix(s, "MiB") || n <= 0 {
		return 0, false
	}
	return n << 20, true
}

// ParseMediaSizes reads a comma-separated list of sizes in MiB ("1,20,100").
func ParseMediaSizes(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseFloat(f, 64)
		if err != nil || n <= 0 || n > 1024 {
			return nil, fmt.Errorf("bad media size %q: want MiB between 0 and 1024", f)
		}
		out = append(out, int64(n*(1<<20)))
	}
	if len(out) == 0 {
		return nil, errors.New("no media sizes")
	}
	return out, nil
}

// fill computes the speeds and the comparison with the bare cryptography.
func (m *MediaResult) fill(crypto []CryptoResult) {
	mb := float64(m.Bytes) / 1e6
	if m.Seconds > 0 {
		m.MBPerSec = round(mb/m.Seconds, 1)
	}
	if m.BridgeSeconds > 0 {
		m.BridgeMBPerSec = round(mb/m.BridgeSeconds, 1)
	}
	if m.TotalSeconds > 0 {
		m.TotalMBPerSec = round(mb/m.TotalSeconds, 1)
	}
	m.PeakGrowthBytes = max(0, m.PeakBytes-m.RSSBeforeBytes)
	if bare, ok := bareFor(crypto, m.Direction, m.Bytes); ok && bare.MBPerSec > 0 {
		m.Bare, m.BareMBPerSec = bare.Name, bare.MBPerSec
		m.RatioToBare = round(m.MBPerSec/bare.MBPerSec, 3)
	}
}

// resetPeak makes the process's VmHWM its current RSS (clear_refs 5, Linux 4.0+) and
// returns that RSS.
func resetPeak(pid int) (int64, error) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return 0, fmt.Errorf("failed to reset the bridge's peak memory: %w", err)
	}
	s, err := ReadProc(pid)
	return s.RSSBytes, err
}

// readPeak reads the process's VmHWM.
func readPeak(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the process's status: %w", err)
	}
	return parseStatusKB(status, "VmHWM")
}

// parseStatusKB returns a "Name:   123 kB" field of a status file, in bytes.
func parseStatusKB(status []byte, name string) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, name+":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("malformed %s line %q", name, line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse %s: %w", name, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in status", name)
}

// blobSize is the encrypted blob of a file of n bytes: AES-CBC with PKCS#7 padding
// (one to 16 bytes) and the 10-byte MAC.
func blobSize(n int64) int64 { return n/16*16 + 16 + mediacrypt.MACLength }

// mediaEnv is one Matrix user with a portal to one simulated Meta user.
type mediaEnv struct {
	e        *env
	p        *pair
	hsPID    int
	download bool
	crypto   []CryptoResult
}

// RunMedia moves one file of each size each way, one at a time, rounds times, through
// the real Synapse, metasim and the bridge process; crypto are the bare mediacrypt figures to
// hold the speeds against.
func RunMedia(ctx context.Context, o Options, sizes []int64, rounds int, download bool, crypto []CryptoResult, rep *Report) error {
	dir := filepath.Join(o.Dir, "media")
	log := o.Log.With().Str("mode", ModeMedia).Logger()
	log.Info().Msg("Starting Synapse, metasim and the bridge")
	cfg := o.bridgeConfig()
	if uri := o.sqliteURI(filepath.Join(dir, "bridge")); uri != "" {
		cfg["database.uri"] = uri
	}
	// The bridge's timings of incoming files are debug lines; one file at a time,
	// logging them costs nothing measurable.
	cfg["logging.min_level"] = "debug"
	// PROTOCOL.md section 7 caps a blob at 100 MiB, MAC included, and the bridge's
	// limits stop at the largest file whose blob fits (config.MaxProxyPlaintext, 17
	// bytes short of 100 MiB): "100 MiB" is measured with that file.
	sizes = slices.Clone(sizes)
	for i := range sizes {
		sizes[i] = min(sizes[i], config.MaxProxyPlaintext)
	}
	largest := slices.Max(sizes)
	adjust := func(c *metasim.Config) {
		simAdjust(c)
		c.Media.MaxBlobSize = max(c.Media.MaxBlobSize, blobSize(largest))
	}
	st, err := kit.StartStack(ctx, kit.StackOptions{RepoRoot: o.RepoRoot, BridgeBinary: o.BridgeBinary, Dir: dir,
		Metasim: adjust, BridgeConfig: cfg, Postgres: o.Postgres})
	if err != nil {
		return fmt.Errorf("failed to start the stack: %w", err)
	}
	defer st.Close()
	e := &env{mode: ModeMedia, o: o, bridge: st.Bridge, sim: st.Sim, log: log, hsPID: st.Synapse.PID()}
	var user *kit.User
	defer func() {
		if user != nil {
			user.Close()
		}
	}()
	mk := func(ctx context.Context, p *pair) error {
		u, err := st.Synapse.NewUser(ctx, "mediabench", false)
		if err != nil {
			return err
		}
		user, p.user, p.mxid, p.token = u, u, u.ID, u.Client.AccessToken
		return nil
	}
	if err := e.setupPairs(ctx, 1, mk, waitOwnJoin); err != nil {
		return fmt.Errorf("failed to set up the chat (bridge log: %s): %w", st.Bridge.LogPath, err)
	}
	m := &mediaEnv{e: e, p: e.pairs[0], hsPID: st.Synapse.PID(), download: download, crypto: crypto}
	// One small file each way first: Signal sessions, media_conn and the portal's
	// first media are set up outside the measurements.
	log.Info().Msg("Warming up with a 64 KiB file each way")
	if _, err := m.toMatrix(ctx, 64<<10); err != nil {
		return fmt.Errorf("warm-up Meta→Matrix: %w", err)
	}
	if _, err := m.toMeta(ctx, 64<<10); err != nil {
		return fmt.Errorf("warm-up Matrix→Meta: %w", err)
	}
	var errs []error
	var all []MediaResult
	for round := 1; round <= max(rounds, 1); round++ {
		for _, dir := range []string{MetaToMatrix, MatrixToMeta} {
			for _, size := range sizes {
				// The files before this one are still being written back to disk; that
				// should not slow this one down.
				syscall.Sync()
				log.Info().Int("round", round).Str("direction", dir).Int64("bytes", size).Msg("Measuring")
				profiled := e.profile(ctx, fmt.Sprintf("media-%s-%dMiB-%d", dir, (size+1<<20-1)>>20, round))
				var res MediaResult
				if dir == MetaToMatrix {
					res, err = m.toMatrix(ctx, size)
				} else {
					res, err = m.toMeta(ctx, size)
				}
				<-profiled
				if err != nil {
					errs = append(errs, fmt.Errorf("%s %d bytes, round %d: %w", dir, size, round, err))
					if ctx.Err() != nil {
						return errors.Join(errs...)
					}
					continue
				}
				res.Round = round
				res.fill(crypto)
				all = append(all, res)
				log.Info().Float64("mb_per_sec", res.MBPerSec).Float64("seconds", res.Seconds).
					Float64("peak_growth_mib", mib(res.PeakGrowthBytes)).Msg("Measured")
			}
		}
	}
	rep.MediaRounds = append(rep.MediaRounds, all...)
	rep.Media = append(rep.Media, SummarizeMedia(all)...)
	return errors.Join(errs...)
}

// SummarizeMedia makes one row per direction and size out of several rounds: the
// round with the median bridged time, with the largest peak growth of all rounds
// (the goal is about the worst case) and Rounds set. Rows keep the order in which
// their direction and size first appear.
func SummarizeMedia(all []MediaResult) []MediaResult {
	type key struct {
		dir  string
		size int64
	}
	var order []key
	groups := map[key][]MediaResult{}
	for _, r := range all {
		k := key{r.Direction, r.Bytes}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]MediaResult, 0, len(order))
	for _, k := range order {
		g := slices.Clone(groups[k])
		slices.SortStableFunc(g, func(a, b MediaResult) int { return cmp.Compare(a.Seconds, b.Seconds) })
		med := g[(len(g)-1)/2]
		for _, r := range g {
			if r.PeakGrowthBytes > med.PeakGrowthBytes {
				med.PeakGrowthBytes, med.PeakBytes, med.RSSBeforeBytes = r.PeakGrowthBytes, r.PeakBytes, r.RSSBeforeBytes
			}
		}
		med.Rounds = len(g)
		out = append(out, med)
	}
	return out
}

// sample reads the bridge's and Synapse's CPU time.
func (m *mediaEnv) sample() (bridge, hs ProcSample, err error) {
	if bridge, err = ReadProc(m.e.bridge.PID()); err != nil {
		return
	}
	hs, err = ReadProc(m.hsPID)
	return
}

// finish reads the bridge's peak and both processes' CPU into res. The peak is read
// a moment after the arrival, so that work trailing it (receipts, status events,
// temporary files) counts too; VmHWM only grows.
func (m *mediaEnv) finish(ctx context.Context, res *MediaResult, b0, h0 ProcSample) error {
	b1, h1, err := m.sample()
	if err != nil {
		return err
	}
	res.BridgeCPUSeconds = round((b1.CPU - b0.CPU).Seconds(), 3)
	res.HomeserverCPUSeconds = round((h1.CPU - h0.CPU).Seconds(), 3)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(500 * time.Millisecond):
	}
	res.PeakBytes, err = readPeak(m.e.bridge.PID())
	return err
}

// toMatrix has the simulated user send a document of size random bytes (generated by
// metasim) and times it until the Matrix user's /sync delivers the m.file.
func (m *mediaEnv) toMatrix(ctx context.Context, size int64) (MediaResult, error) {
	res := MediaResult{Mode: ModeMedia, Direction: MetaToMatrix, Bytes: size}
	p := m.p
	name := fmt.Sprintf("bench-%d.bin", time.Now().UnixNano())
	var sent struct {
		Media struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		} `json:"media"`
	}
	var err error
	if res.RSSBeforeBytes, err = resetPeak(m.e.bridge.PID()); err != nil {
		return res, err
	}
	b0, h0, err := m.sample()
	if err != nil {
		return res, err
	}
	logFrom := logSize(m.e.bridge.LogPath)
	mark := p.user.Mark()
	start := time.Now()
	if err := m.e.sim.Call(ctx, "POST", "/v1/users/"+p.peer.JID+"/messages", map[string]any{
		"to": p.account, "kind": "document",
		"media": map[string]any{"size": size, "mimetype": "application/octet-stream", "file_name": name},
	}, &sent); err != nil {
		return res, fmt.Errorf("failed to send the document: %w", err)
	}
	accepted := time.Now()
	evt, err := p.user.WaitEventAfter(ctx, mark, 5*time.Minute, "the "+name+" document", func(evt *event.Event) bool {
		return evt.Type == event.EventMessage && evt.RoomID == p.room && evt.Sender != p.mxid &&
			evt.Content.AsMessage().FileName == name
	})
	arrived := time.Now()
	if err != nil {
		return res, err
	}
	res.SenderSeconds = round(accepted.Sub(start).Seconds(), 3)
	res.Seconds = round(arrived.Sub(accepted).Seconds(), 3)
	res.TotalSeconds = round(arrived.Sub(start).Seconds(), 3)
	if err := m.finish(ctx, &res, b0, h0); err != nil {
		return res, err
	}
	if t, err := readIncomingTimes(m.e.bridge.LogPath, logFrom, size, name); err != nil {
		m.e.log.Warn().Err(err).Msg("No bridge timings for the file")
	} else {
		res.BridgeSeconds, res.UploadSeconds = round(t.Took.Seconds(), 3), round(t.Upload.Seconds(), 3)
	}
	content := evt.Content.AsMessage()
	if content.MsgType != event.MsgFile {
		return res, fmt.Errorf("the document arrived as %s, not m.file (body %q)", content.MsgType, content.Body)
	}
	if content.Info == nil || int64(content.Info.Size) != size {
		return res, fmt.Errorf("the m.file says %+v, not %d bytes", content.Info, size)
	}
	if !m.download {
		return res, nil
	}
	dlStart := time.Now()
	data, err := downloadContent(ctx, p.user, content)
	if err != nil {
		return res, err
	}
	res.DownloadSeconds = round(time.Since(dlStart).Seconds(), 3)
	if sum := sha256.Sum256(data); int64(len(data)) != size || hex.EncodeToString(sum[:]) != sent.Media.SHA256 {
		return res, fmt.Errorf("downloaded %d bytes with SHA-256 %x; metasim sent %d with %s", len(data), sum, sent.Media.Size, sent.Media.SHA256)
	}
	return res, nil
}

// downloadContent fetches an m.file's bytes through the authenticated media API,
// decrypting them in an encrypted room.
func downloadContent(ctx context.Context, u *kit.User, content *event.MessageEventContent) ([]byte, error) {
	mxc := content.URL
	if content.File != nil {
		mxc = content.File.URL
	}
	uri, err := mxc.Parse()
	if err != nil {
		return nil, fmt.Errorf("bad mxc %q: %w", mxc, err)
	}
	data, err := u.Client.DownloadBytes(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("failed to download %s: %w", uri, err)
	}
	if content.File != nil {
		if err := content.File.DecryptInPlace(data); err != nil {
			return nil, fmt.Errorf("failed to decrypt %s: %w", uri, err)
		}
	}
	return data, nil
}

// toMeta uploads size random bytes to Synapse as the Matrix user, sends them as an
// m.file and times it until the simulated device's inbox shows the file fetched
// from the bridge through Meta's proxy and verified.
func (m *mediaEnv) toMeta(ctx context.Context, size int64) (MediaResult, error) {
	res := MediaResult{Mode: ModeMedia, Direction: MatrixToMeta, Bytes: size}
	p := m.p
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		return res, err
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	name := fmt.Sprintf("bench-%d.bin", time.Now().UnixNano())
	_, since, err := p.peer.Inbox(ctx, 0, 0, url.Values{"kind": {"media"}})
	if err != nil {
		return res, fmt.Errorf("failed to read the inbox: %w", err)
	}
	start := time.Now()
	up, err := p.user.Client.UploadBytes(ctx, data, "application/octet-stream")
	if err != nil {
		return res, fmt.Errorf("failed to upload to Synapse: %w", err)
	}
	data = nil
	uploaded := time.Now()
	if res.RSSBeforeBytes, err = resetPeak(m.e.bridge.PID()); err != nil {
		return res, err
	}
	b0, h0, err := m.sample()
	if err != nil {
		return res, err
	}
	logFrom := logSize(m.e.bridge.LogPath)
	sendAt := time.Now()
	if _, err := p.user.Send(ctx, p.room, &event.MessageEventContent{MsgType: event.MsgFile, Body: name,
		URL: up.ContentURI.CUString(), Info: &event.FileInfo{MimeType: "application/octet-stream", Size: int(size)}}); err != nil {
		return res, err
	}
	arrived, received, err := waitMediaOK(ctx, p.peer, since, want, 5*time.Minute)
	if err != nil {
		return res, err
	}
	res.SenderSeconds = round(uploaded.Sub(start).Seconds(), 3)
	res.Seconds = round(arrived.Sub(sendAt).Seconds(), 3)
	if !received.IsZero() && received.After(sendAt) && received.Before(arrived) {
		res.BridgeSeconds = round(received.Sub(sendAt).Seconds(), 3)
		res.FetchSeconds = round(arrived.Sub(received).Seconds(), 3)
	}
	res.TotalSeconds = round(arrived.Sub(start).Seconds(), 3)
	if err := m.finish(ctx, &res, b0, h0); err != nil {
		return res, err
	}
	if took, err := readOutgoingTook(m.e.bridge.LogPath, logFrom, size); err != nil {
		m.e.log.Warn().Err(err).Msg("No bridge timing for the file")
	} else {
		res.HostSeconds = round(took.Seconds(), 3)
	}
	return res, nil
}

// waitMediaOK polls the simulated user's inbox after since until a media item with
// the plaintext SHA-256 want is fetched and verified, and returns when it saw that
// and when the device had received the message (zero when the item does not say).
// A pending item keeps its place in the inbox, so while one is pending the inbox is
// polled every 10 ms instead of long-polled.
func waitMediaOK(ctx context.Context, peer *kit.SimUser, since int64, want string, timeout time.Duration) (arrived, received time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	q := url.Values{"kind": {"media"}}
	wait := 10 * time.Second
	for {
		items, next, err := peer.Inbox(ctx, since, wait, q)
		now := time.Now()
		if err != nil {
			return now, received, fmt.Errorf("the file never reached the Meta user's device (last inbox read: %w)", err)
		}
		wait = 10 * time.Second
		for _, item := range items {
			data, _ := item["data"].(map[string]any)
			media, _ := data["media"].(map[string]any)
			if media == nil {
				continue
			}
			switch media["status"] {
			case "ok":
				if media["sha256"] == want {
					if at, ok := item["received_at"].(string); ok {
						received, _ = time.Parse(time.RFC3339Nano, at)
					}
					return now, received, nil
				}
			case "pending":
				wait = 0
			case "error":
				return now, received, fmt.Errorf("the Meta user's device failed to fetch a file: %v (%v)", media["error"], media["error_kind"])
			}
		}
		since = next
		if wait == 0 {
			select {
			case <-ctx.Done():
				return time.Now(), received, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}
