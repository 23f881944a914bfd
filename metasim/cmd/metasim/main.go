// Command metasim runs the simulator of Meta's side of the interop protocol: the
// WhatsApp and Messenger gateways, Meta's media hosts, simulated users and the
// control API. An admin runs it to try a bridge deployment before signing Meta's
// agreement; the end-to-end tests run it as the far end.
//
//	metasim [-c config.yaml] [-g]
//
// Without a config file it writes a default one (with fresh secrets) and starts with
// it. -g only writes the default config and exits. SIGINT or SIGTERM shut it down
// cleanly (exit 0).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	isignal "github.com/matrix-meta-interop/matrix-meta-interop/interop/signal"
	"github.com/matrix-meta-interop/matrix-meta-interop/metasim"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("metasim", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("c", "config.yaml", "path of the config file (generated if missing)")
	generate := flags.Bool("g", false, "write a default config to the -c path and exit")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "Usage: metasim [-c config.yaml] [-g]")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		flags.Usage()
		return 2
	}
	path, err := filepath.Abs(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "metasim: %v\n", err)
		return 1
	}

	if *generate {
		if _, err := metasim.WriteDefaultConfig(path); err != nil {
			fmt.Fprintf(stderr, "metasim: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "Wrote a default config to %s\n", path)
		return 0
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := metasim.WriteDefaultConfig(path); err != nil {
			fmt.Fprintf(stderr, "metasim: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "No config file found: wrote a default one to %s\n", path)
	}
	cfg, err := metasim.LoadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "metasim: %v\n", err)
		return 1
	}
	log, err := metasim.NewLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "metasim: %v\n", err)
		return 1
	}

	// libsignal logs to stdout by default, which would mix with the summary below.
	isignal.RouteLibraryLogs(log.With().Str("component", "libsignal").Logger())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = log.WithContext(ctx)
	sim, err := metasim.New(ctx, cfg, log)
	if err != nil {
		log.Err(err).Msg("Failed to set up the simulator")
		return 1
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = sim.Start(startCtx)
	cancel()
	if err != nil {
		log.Err(err).Msg("Failed to start the simulator")
		_ = sim.Close()
		return 1
	}
	printSummary(stdout, sim, path)

	<-ctx.Done()
	log.Info().Msg("Shutting down")
	if err := sim.Close(); err != nil {
		log.Err(err).Msg("Failed to shut down cleanly")
		return 1
	}
	return 0
}

// printSummary says where everything is, one "name: value" line each, so a person can
// copy from it and a script can parse it.
func printSummary(w io.Writer, sim *metasim.Simulator, configPath string) {
	addrs := sim.Addrs()
	fmt.Fprintln(w, "metasim is running")
	fmt.Fprintf(w, "  control API: %s\n", sim.ControlURL())
	fmt.Fprintf(w, "  control token: control.token in %s\n", configPath)
	for _, name := range metasim.Networks() {
		if sim.Gateway(name) == nil {
			continue
		}
		fmt.Fprintf(w, "  %s gateway: %s\n", name, sim.GatewayURL(name))
		if f := sim.RootPublicKeyFile(name); f != "" {
			fmt.Fprintf(w, "  %s root public key: %s\n", name, f)
		}
	}
	if addrs.Media != "" {
		fmt.Fprintf(w, "  media host: http://%s\n", addrs.Media)
	}
	fmt.Fprintf(w, "  database: %s\n", sim.Database())
	fmt.Fprintln(w, "Stop with Ctrl-C or SIGTERM.")
}
