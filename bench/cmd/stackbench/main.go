// Command stackbench measures the bridge through the whole stack (`make bench`): see
// package bench. It prints a table and writes the figures as JSON under
// bench/results/.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/matrix-meta-interop/matrix-meta-interop/bench"
	"github.com/matrix-meta-interop/matrix-meta-interop/e2e/kit"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		pairs      = flag.Int("pairs", 10, "Matrix users, each chatting with its own simulated Meta user")
		messages   = flag.Int("messages", 100, "messages each user sends in each direction")
		window     = flag.Int("window", 4, "messages one user may have in flight")
		modes      = flag.String("modes", "floor,stack,loadgen,memory,media,group", "what to run: floor (interop/ benchmarks), stack (real Synapse), loadgen (fake homeserver), memory (RSS per login, with the fake homeserver), media (files each way through the real Synapse, with interop/mediacrypt's speeds), group (interop/'s send to a group of 256 simulated users with 2 devices each, on the -bridge-db store)")
		mediaSizes = flag.String("media-sizes", "1,20,100", "media mode: file sizes in MiB, each moved each way once a round")
		mediaRound = flag.Int("media-rounds", 3, "media mode: how many times each file is moved; the table shows the median round and the largest peak growth")
		mediaDL    = flag.Bool("media-download", true, "media mode: download each Meta→Matrix file through Synapse after it arrived and check its bytes")
		logins     = flag.String("memory-logins", "1,100,1000", "connected login counts for the memory readings")
		results    = flag.String("results", "", "folder for the JSON results (default bench/results in the checkout)")
		stall      = flag.Duration("stall", 30*time.Second, "end a phase when nothing arrived for this long")
		logLevel   = flag.String("bridge-log-level", "info", "the bridge's logging.min_level during the run")
		benchtime  = flag.String("floor-benchtime", "1s", "-benchtime for the interop/ benchmarks")
		groupTime  = flag.String("group-benchtime", "3x", "group mode: -benchtime for BenchmarkGroupSend (Nx: N measured sends per case, after one more)")
		keepFolder = flag.Bool("keep", false, "keep the bridges' folders (logs, databases)")
		bridgeDB   = flag.String("bridge-db", "sqlite", "the bridge's database: sqlite, or postgres (a fresh database on $INTEROP_TEST_POSTGRES)")
		sqlParams  = flag.String("bridge-sqlite-params", "", "query parameters for the bridge's SQLite URI instead of the kit's (_txlock=immediate), e.g. _txlock=immediate&_stmt_cache_size=64")
		debug      = flag.Bool("bridge-debug", false, "turn on the bridge's pprof endpoints (/debug/pprof on its appservice port, provisioning secret as bearer token)")
		profile    = flag.String("profile", "", "write a CPU profile of the bridge for each measured phase into this folder (turns on -bridge-debug); read with go tool pprof <bridge binary, kept with -keep> <file>")
		profileSec = flag.Int("profile-seconds", 5, "how long each -profile covers, from the phase's start")
	)
	bridgeSet := map[string]any{}
	flag.Func("bridge-set", "a bridge config key to set, as dotted.key=yaml-value (repeatable), e.g. database.max_idle_conns=5",
		func(kv string) error {
			key, value, ok := strings.Cut(kv, "=")
			if !ok || key == "" {
				return fmt.Errorf("want key=value, got %q", kv)
			}
			var v any
			if err := yaml.Unmarshal([]byte(value), &v); err != nil {
				return fmt.Errorf("failed to parse the value of %s: %w", key, err)
			}
			bridgeSet[key] = v
			return nil
		})
	flag.Parse()
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	root, err := kit.RepoRoot()
	if err != nil {
		log.Error().Err(err).Msg("Run stackbench inside the checkout")
		return 2
	}
	var counts []int
	for _, s := range strings.Split(*logins, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			log.Error().Str("value", s).Msg("Bad -memory-logins")
			return 2
		}
		counts = append(counts, n)
	}
	sizes, err := bench.ParseMediaSizes(*mediaSizes)
	if err != nil {
		log.Error().Err(err).Msg("Bad -media-sizes")
		return 2
	}
	want := map[string]bool{}
	for _, m := range strings.Split(*modes, ",") {
		want[strings.TrimSpace(m)] = true
	}
	dir, err := os.MkdirTemp("", "stackbench-")
	if err != nil {
		log.Error().Err(err).Msg("Failed to make a work folder")
		return 1
	}
	if *keepFolder {
		log.Info().Str("dir", dir).Msg("Keeping the work folder")
	} else {
		defer os.RemoveAll(dir)
	}
	rep := &bench.Report{StartedAt: time.Now(), Host: bench.CurrentHost(), Settings: map[string]any{
		"pairs": *pairs, "messages_per_user_per_direction": *messages, "window": *window, "modes": *modes,
		"memory_logins": counts, "media_sizes_bytes": sizes, "media_rounds": *mediaRound, "group_benchtime": *groupTime, "bridge_log_level": *logLevel, "bridge_database": *bridgeDB, "bridge_config": bridgeSet, "bridge_sqlite_params": *sqlParams,
	}}
	o := bench.Options{RepoRoot: root, Dir: dir, Pairs: *pairs, Messages: *messages, Window: *window,
		MemoryLogins: counts, Stall: *stall, BridgeLogLevel: *logLevel, BridgeDebug: *debug || *profile != "", BridgeConfig: bridgeSet, SQLiteParams: *sqlParams, ProfileDir: *profile, ProfileSeconds: *profileSec, Keep: *keepFolder, Log: log}
	switch *bridgeDB {
	case "sqlite":
	case "postgres":
		o.Postgres = os.Getenv("INTEROP_TEST_POSTGRES")
		if o.Postgres == "" {
			o.Postgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
		}
	default:
		log.Error().Str("value", *bridgeDB).Msg("Bad -bridge-db")
		return 2
	}
	rep.FloorStore = *bridgeDB
	fail := func(what string, err error) {
		log.Error().Err(err).Msg(what)
		rep.Errors = append(rep.Errors, what+": "+err.Error())
	}

	if want["floor"] {
		log.Info().Msg("Running the interop/ per-message benchmarks (the floor)")
		floor, _, err := bench.RunFloor(ctx, root, *benchtime)
		if err != nil {
			fail("interop/ floor", err)
		}
		rep.Floor = floor
	}
	if want["media"] {
		// On the machine while it is quiet, before any stack runs.
		log.Info().Msg("Running the interop/mediacrypt benchmarks (bare media encryption)")
		crypto, err := bench.RunMediaCrypto(ctx, root, *benchtime)
		if err != nil {
			fail("interop/mediacrypt", err)
		}
		rep.MediaCrypto = crypto
	}
	if want["group"] {
		// Before the stacks: it fills both cores with its own simulated users.
		log.Info().Str("store", *bridgeDB).Msg("Running interop/'s group send benchmark (256 simulated users, 2 devices each)")
		group, err := bench.RunGroup(ctx, root, *bridgeDB, *groupTime)
		if err != nil {
			fail("group send", err)
		}
		rep.Group = group
	}
	if want["stack"] || want["loadgen"] || want["memory"] || want["media"] {
		log.Info().Msg("Building the bridge")
		o.BridgeBinary, err = kit.BuildBridge(ctx, root, dir)
		if err != nil {
			log.Error().Err(err).Msg("Failed to build the bridge")
			return 1
		}
	}
	if want["stack"] {
		if err := bench.RunStack(ctx, o, rep); err != nil {
			fail("stack mode", err)
		}
	}
	if want["loadgen"] {
		if err := bench.RunLoadgen(ctx, o, rep); err != nil {
			fail("loadgen mode", err)
		}
	}
	if want["memory"] && len(counts) > 0 {
		if err := bench.RunMemory(ctx, o, rep); err != nil {
			fail("memory", err)
		}
	}
	if want["media"] {
		if err := bench.RunMedia(ctx, o, sizes, *mediaRound, *mediaDL, rep.MediaCrypto, rep); err != nil {
			fail("media mode", err)
		}
	}
	rep.AddNotes()
	rep.FinishedAt = time.Now()
	rep.Print(os.Stdout)
	out := *results
	if out == "" {
		out = filepath.Join(root, "bench", "results")
	}
	path, err := rep.WriteJSON(out)
	if err != nil {
		log.Error().Err(err).Msg("Failed to write the results")
		return 1
	}
	fmt.Printf("results written to %s\n", path)
	if len(rep.Errors) > 0 {
		return 1
	}
	return 0
}
