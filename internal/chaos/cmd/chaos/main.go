// Command chaos runs the reliability harness of package chaos: worker
// processes, embedded NATS servers and a fault-injecting provider, each fault
// alone and then all together, and prints what it injected and what it found.
// It exits 1 when any request was lost, duplicated, dead-lettered without
// being poison or otherwise broke the invariant, and 2 when the harness could
// not run.
//
//	go run ./internal/chaos/cmd/chaos -requests 50000
//
// By default it runs the long form (chaos.DefaultScenarios: a 2-minute
// provider outage, a key rejected for a minute) with the workers'
// PROVIDER_PROBE_INTERVAL at its production default of 1m; -short runs the
// scenarios of TestChaosShort (chaos.ShortScenarios) instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aibatch/aibatch/internal/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the harness and prints its report to stdout; it
// returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       chaos.Config
		scenarios string
		quiet     bool
		short     bool
		probe     time.Duration
	)
	fs.IntVar(&cfg.Requests, "requests", 50000, "requests over all scenarios, shared by weight")
	fs.IntVar(&cfg.Workers, "workers", 3, "worker processes per scenario")
	fs.IntVar(&cfg.Parallel, "parallel", 1, "scenarios run at the same time")
	fs.IntVar(&cfg.Rate, "rate", 300, "requests published per second while faults run")
	fs.DurationVar(&cfg.Drain, "drain", 2*time.Minute, "longest wait for the request stream to empty after the faults stop")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the random choices (0: from the clock)")
	fs.BoolVar(&cfg.Race, "race", false, "build the worker with the race detector")
	fs.StringVar(&cfg.WorkerBin, "worker", "", "worker binary to run (default: build ./cmd/worker)")
	fs.StringVar(&cfg.Dir, "dir", "", "keep the logs and stores here (default: a temporary directory, kept only on failure)")
	fs.StringVar(&scenarios, "scenarios", "", "comma-separated scenario names to run (default: every fault alone, then all together)")
	fs.BoolVar(&quiet, "quiet", false, "print only the report, not each fault")
	fs.BoolVar(&short, "short", false, "run the short form's scenarios (provider outages of seconds, as TestChaosShort)")
	fs.DurationVar(&probe, "probe-interval", time.Minute, "the workers' PROVIDER_PROBE_INTERVAL: the longest wait between probes of an open circuit breaker")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if probe <= 0 {
		fmt.Fprintf(stderr, "chaos: -probe-interval %s: want a positive duration\n", probe)
		return 2
	}
	cfg.WorkerEnv = map[string]string{"PROVIDER_PROBE_INTERVAL": probe.String()}
	all := chaos.DefaultScenarios()
	if short {
		all = chaos.ShortScenarios()
		cfg.Scenarios = all
	}
	if scenarios != "" {
		cfg.Scenarios = nil
		byName := map[string]chaos.Scenario{}
		var names []string
		for _, s := range all {
			byName[s.Name] = s
			names = append(names, s.Name)
		}
		for _, name := range strings.Split(scenarios, ",") {
			s, ok := byName[strings.TrimSpace(name)]
			if !ok {
				fmt.Fprintf(stderr, "chaos: unknown scenario %q; known: %s\n", name, strings.Join(names, ", "))
				return 2
			}
			cfg.Scenarios = append(cfg.Scenarios, s)
		}
	}
	if !quiet {
		cfg.Log = stderr
	}
	report, err := chaos.Run(ctx, cfg)
	if len(report.Scenarios) > 0 {
		if werr := report.Write(stdout); werr != nil {
			fmt.Fprintln(stderr, "chaos: print the report:", werr)
		}
	}
	switch {
	case err != nil:
		fmt.Fprintln(stderr, err)
		return 2
	case report.Problems() > 0:
		return 1
	}
	return 0
}
