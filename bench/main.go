// Command bench measures what the batching layer costs on top of JetStream
// and what it saves: throughput against broker loops that bound it (a
// pipelined fetch, publish, ack loop with as many batches in flight as the
// worker, and fetch + ack alone), the worker process end to end against
// those loops in processes of their own (CPU per request of each), API
// calls per request against immediate mode and, with several prompt
// templates and a fleet of worker processes, against the ideal,
// urgent-lane latency and the batch lane's longest wait, hiding provider
// latency with calls in flight, the worker's peak memory, and the provider
// calls spent when the model's answers are cut off at an output limit or it
// refuses some inputs (the real openai provider against the fake OpenAI
// server, over HTTP), the Batch API lines and estimated cost of
// ASYNC_COMBINE against plain async mode, the OpenAI-compatible gateway's
// added latency and memory, and partitioned request streams: their
// ceiling on one server, and one provider quota kept by fleets that grow
// over partitions and workers. Every scenario runs against JetStream
// servers with
// file storage on loopback; comparisons are measured side by side in each
// run and reported as median, min and max over the runs.
//
//	go run ./bench              # the full run `make bench` does
//	go run ./bench -quick       # every scenario, small, in about a minute
//	go run ./bench -only rates  # one scenario
//	go run ./bench -only fault-cap,fault-refusal  # the provider-fault scenarios
//	go run ./bench -only e2e,mixed-burst,mixed-rates  # scenarios 9 and 10
//	go run ./bench -only gateway  # scenario 12: the OpenAI-compatible gateway
//	go run ./bench -only partition  # scenario 13: partitions and the fleet quota
//
// It prints one table on stdout (progress goes to stderr) and writes the
// same figures, with the raw ones, as JSON (-out). Targets are reported,
// never asserted: the exit code is 0 unless a scenario could not run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the harness's settings; see the flags for their meaning.
type options struct {
	Quick  bool   `json:"quick"`
	Runs   int    `json:"runs"`
	Out    string `json:"-"`
	Micro  string `json:"micro,omitempty"`
	Only   string `json:"only,omitempty"`
	Seed   uint64 `json:"seed"`
	TmpDir string `json:"-"`

	RequestSize int `json:"request_bytes"`

	TPRequests int   `json:"throughput_requests"`
	TPSize     int   `json:"throughput_request_bytes"`
	TPBatches  []int `json:"throughput_batches"`
	// Inflight is MAX_INFLIGHT_BATCHES of the worker and the batches the
	// broker loops keep in flight, in scenarios 1, 5 and 9.
	Inflight int `json:"inflight_batches"`

	Rates        []float64     `json:"rates"`
	RateDuration time.Duration `json:"rate_duration"`
	RateInterval time.Duration `json:"rate_batch_interval"`
	RateMaxWait  time.Duration `json:"rate_max_wait"`
	RateBatch    int           `json:"rate_max_batch_size"`

	UrgentRate     float64       `json:"urgent_rate"`
	UrgentDuration time.Duration `json:"urgent_duration"`
	UrgentBacklog  int           `json:"urgent_backlog"`
	LaneRate       float64       `json:"lane_rate"`
	LaneMaxWait    time.Duration `json:"lane_max_wait"`
	LaneDuration   time.Duration `json:"lane_duration"`

	SlowLatency time.Duration `json:"slow_latency"`
	Inflights   []int         `json:"inflights"`
	Rounds      int           `json:"rounds"`

	MemRequests   int `json:"memory_requests"`
	MemSize       int `json:"memory_request_bytes"`
	MemRuns       int `json:"memory_runs"`
	FaultRequests int `json:"fault_requests"`
	FaultBatch    int `json:"fault_max_batch_size"`
	FaultCap      int `json:"fault_output_cap_items"`
	RefuseEvery   int `json:"fault_refuse_every"`

	E2ERequests int `json:"e2e_requests"`
	E2ESize     int `json:"e2e_request_bytes"`

	MixTemplates      int           `json:"mixed_templates"`
	MixBatch          int           `json:"mixed_max_batch_size"`
	MixBurst          int           `json:"mixed_burst"`
	MixBurstTarget    int           `json:"mixed_burst_target_calls"`
	MixSteadyRate     float64       `json:"mixed_steady_rate"`
	MixSteadyDuration time.Duration `json:"mixed_steady_duration"`
	MixLowRate        float64       `json:"mixed_low_rate"`
	MixLowDuration    time.Duration `json:"mixed_low_duration"`
	MixMaxWait        time.Duration `json:"mixed_max_wait"`
	MixWorkers        int           `json:"mixed_workers"`

	GWRate     float64       `json:"gateway_rate"`
	GWDuration time.Duration `json:"gateway_duration"`
	GWWaiting  int           `json:"gateway_waiting"`

	PartRequests    int           `json:"partition_requests"`
	PartE2ERequests int           `json:"partition_e2e_requests"`
	PartQuotaRPM    int           `json:"partition_quota_rpm"`
	PartQuotaWindow time.Duration `json:"partition_quota_window"`

	// ProfileDir, when set, receives CPU profiles (go tool pprof) of each
	// scenario 1 drain (the whole harness process: server and drainer) and
	// of scenario 5's worker and loop processes (the drainer alone), and of
	// scenario 9's worker process and loop processes.
	ProfileDir string `json:"profile_dir,omitempty"`
}

// MarshalJSON writes the options with durations as text ("10s").
func (o options) MarshalJSON() ([]byte, error) {
	type plain options
	return json.Marshal(struct {
		plain
		RateDuration   string `json:"rate_duration"`
		RateInterval   string `json:"rate_batch_interval"`
		RateMaxWait    string `json:"rate_max_wait"`
		UrgentDuration string `json:"urgent_duration"`
		LaneMaxWait    string `json:"lane_max_wait"`
		LaneDuration   string `json:"lane_duration"`
		SlowLatency    string `json:"slow_latency"`
		MixSteady      string `json:"mixed_steady_duration"`
		MixLow         string `json:"mixed_low_duration"`
		MixMaxWait     string `json:"mixed_max_wait"`
		GWDuration     string `json:"gateway_duration"`
		PartWindow     string `json:"partition_quota_window"`
	}{plain(o), o.RateDuration.String(), o.RateInterval.String(), o.RateMaxWait.String(),
		o.UrgentDuration.String(), o.LaneMaxWait.String(), o.LaneDuration.String(), o.SlowLatency.String(),
		o.MixSteadyDuration.String(), o.MixLowDuration.String(), o.MixMaxWait.String(), o.GWDuration.String(),
		o.PartQuotaWindow.String()})
}

// scenarios in the order they run.
var scenarios = []string{"micro", "throughput", "rates", "latency", "inflight", "memory", "fault-cap", "fault-refusal",
	"e2e", "mixed-burst", "mixed-rates", "async-combine", "gateway", "partition"}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case childCommand:
			os.Exit(childMain(os.Args[2:]))
		case serverCommand:
			os.Exit(serverMain(os.Args[2:]))
		}
	}
	os.Exit(run(os.Args[1:]))
}

// parseOptions reads the flags; -quick changes the defaults of every flag
// not given explicitly to a small run.
func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.BoolVar(&o.Quick, "quick", false, "small sizes and 1 run: every scenario in well under a minute")
	fs.IntVar(&o.Runs, "runs", 3, "runs of each comparison (median, min and max are reported)")
	fs.StringVar(&o.Out, "out", "bench/results.json", "JSON results file (with -quick the default is in the temp dir)")
	fs.StringVar(&o.Micro, "micro", "", "output of `go test -bench` to include as scenario 6")
	fs.StringVar(&o.Only, "only", "", "comma-separated scenarios to run: "+strings.Join(scenarios, ","))
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the Poisson arrivals")
	fs.IntVar(&o.RequestSize, "request-bytes", 500, "request body size in scenarios 2-4")
	fs.IntVar(&o.TPRequests, "tp-requests", 200_000, "scenario 1: backlog drained per measurement")
	fs.IntVar(&o.TPSize, "tp-bytes", 500, "scenario 1: request body size")
	intsVar(fs, &o.TPBatches, "tp-batches", []int{50, 100}, "scenario 1: MAX_BATCH_SIZE values (the loops fetch as many)")
	fs.IntVar(&o.Inflight, "inflight", 4, "scenarios 1, 5 and 9: MAX_INFLIGHT_BATCHES, and the batches the broker loops keep in flight")
	floatsVar(fs, &o.Rates, "rates", []float64{1, 10, 100, 1000}, "scenario 2: Poisson arrival rates, requests/s")
	fs.DurationVar(&o.RateDuration, "rate-duration", 10*time.Second, "scenario 2: arrivals last this long per rate")
	fs.DurationVar(&o.RateInterval, "rate-interval", time.Second, "scenario 2: BATCH_INTERVAL")
	fs.DurationVar(&o.RateMaxWait, "rate-max-wait", 5*time.Second, "scenario 2: MAX_WAIT")
	fs.IntVar(&o.RateBatch, "batch", 50, "scenarios 2-4: MAX_BATCH_SIZE")
	fs.Float64Var(&o.UrgentRate, "urgent-rate", 100, "scenario 3: urgent requests/s")
	fs.DurationVar(&o.UrgentDuration, "urgent-duration", 10*time.Second, "scenario 3: urgent arrivals last this long")
	fs.IntVar(&o.UrgentBacklog, "urgent-backlog", 20_000, "scenario 3: batch-lane backlog kept draining meanwhile")
	fs.Float64Var(&o.LaneRate, "lane-rate", 5, "scenario 3: batch-lane requests/s in the MAX_WAIT check")
	fs.DurationVar(&o.LaneMaxWait, "lane-max-wait", 2*time.Second, "scenario 3: MAX_WAIT in the MAX_WAIT check")
	fs.DurationVar(&o.LaneDuration, "lane-duration", 10*time.Second, "scenario 3: arrivals last this long in the MAX_WAIT check")
	fs.DurationVar(&o.SlowLatency, "slow-latency", 500*time.Millisecond, "scenario 4: provider latency per call")
	intsVar(fs, &o.Inflights, "inflights", []int{1, 4, 16}, "scenario 4: MAX_INFLIGHT_BATCHES values")
	fs.IntVar(&o.Rounds, "rounds", 6, "scenario 4: waves of calls per measurement")
	fs.IntVar(&o.MemRequests, "mem-requests", 1_000_000, "scenario 5: backlog drained by each process")
	fs.IntVar(&o.MemSize, "mem-bytes", 1024, "scenario 5: request body size")
	fs.IntVar(&o.MemRuns, "mem-runs", 1, "scenario 5: runs")
	fs.IntVar(&o.FaultRequests, "fault-requests", 1000, "scenarios 7, 8 and 11: backlog drained per measurement")
	fs.IntVar(&o.FaultBatch, "fault-batch", 50, "scenarios 7, 8 and 11: MAX_BATCH_SIZE")
	fs.IntVar(&o.FaultCap, "fault-cap", 20, "scenario 7: the fake's answers fit this many items (openaitest SetOutputCap)")
	fs.IntVar(&o.RefuseEvery, "refuse-every", 50, "scenario 8: the fake refuses one input in this many (openaitest RefuseInput)")
	fs.IntVar(&o.E2ERequests, "e2e-requests", 200_000, "scenario 9: backlog drained by each process")
	fs.IntVar(&o.E2ESize, "e2e-bytes", 512, "scenario 9: request body size")
	fs.IntVar(&o.MixTemplates, "mix-templates", 10, "scenario 10: prompt templates (instructions), round-robin")
	fs.IntVar(&o.MixBatch, "mix-batch", 50, "scenario 10: MAX_BATCH_SIZE")
	fs.IntVar(&o.MixBurst, "mix-burst", 1000, "scenario 10: requests in the burst")
	fs.IntVar(&o.MixBurstTarget, "mix-burst-target", 22, "scenario 10: most calls the burst may take (the issue's target; ideal 20 at the defaults)")
	fs.Float64Var(&o.MixSteadyRate, "mix-steady-rate", 100, "scenario 10: steady load, requests/s over every template")
	fs.DurationVar(&o.MixSteadyDuration, "mix-steady-duration", time.Minute, "scenario 10: steady load's arrivals last this long")
	fs.Float64Var(&o.MixLowRate, "mix-low-rate", 3, "scenario 10: low rate, requests/s over every template")
	fs.DurationVar(&o.MixLowDuration, "mix-low-duration", 90*time.Second, "scenario 10: low rate's arrivals last this long")
	fs.DurationVar(&o.MixMaxWait, "mix-max-wait", 20*time.Second, "scenario 10: the workers' MAX_WAIT at the steady and low rates")
	fs.IntVar(&o.MixWorkers, "mix-workers", 3, "scenario 10: worker processes of the fleet cells")
	fs.Float64Var(&o.GWRate, "gw-rate", 1000, "scenario 11: requests/s through each path (the Go client, the gateway)")
	fs.DurationVar(&o.GWDuration, "gw-duration", 10*time.Second, "scenario 11: arrivals last this long per path")
	fs.IntVar(&o.GWWaiting, "gw-waiting", 10_000, "scenario 11: HTTP requests held waiting at once for the gateway's RSS")
	fs.IntVar(&o.PartRequests, "part-requests", 100_000, "scenario 13: backlog the fetch + ack loops drain, over every partition")
	fs.IntVar(&o.PartE2ERequests, "part-e2e-requests", 50_000, "scenario 13: backlog the worker processes drain end to end")
	fs.IntVar(&o.PartQuotaRPM, "part-quota-rpm", 600, "scenario 13: PROVIDER_RPM the fleets of the quota cells share")
	fs.DurationVar(&o.PartQuotaWindow, "part-quota-window", 30*time.Second, "scenario 13: how long each quota cell's calls are counted")
	fs.StringVar(&o.ProfileDir, "profile", "", "directory for CPU profiles: scenario 1 per drain (server + drainer), scenarios 5 and 9 per drainer process (scenario 9 builds the worker with a profiling hook, bench/testdata/workerprofile.go)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Quick {
		set := make(map[string]bool)
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]string{
			"runs": "1", "out": filepath.Join(os.TempDir(), "aibatch-bench-quick.json"),
			"tp-requests": "5000", "rate-duration": "2s", "urgent-duration": "2s", "urgent-backlog": "2000",
			"lane-max-wait": "1s", "lane-duration": "3s", "rounds": "2", "mem-requests": "10000",
			"e2e-requests": "10000", "mix-steady-duration": "5s", "mix-low-duration": "10s", "mix-max-wait": "3s",
			"gw-duration": "2s", "gw-waiting": "2000",
			"part-requests": "20000", "part-e2e-requests": "10000", "part-quota-window": "10s",
		}
		for name, v := range quick {
			if !set[name] {
				if err := fs.Set(name, v); err != nil {
					return nil, err
				}
			}
		}
	}
	if o.Runs < 1 || o.MemRuns < 1 || o.Rounds < 1 || o.Inflight < 1 || len(o.TPBatches) == 0 || len(o.Inflights) == 0 {
		return nil, fmt.Errorf("-runs, -mem-runs, -rounds, -inflight must be 1 or more, -tp-batches and -inflights not empty")
	}
	if o.FaultRequests < 1 || o.FaultBatch < 1 || o.FaultCap < 1 || o.RefuseEvery < 1 {
		return nil, fmt.Errorf("-fault-requests, -fault-batch, -fault-cap and -refuse-every must be 1 or more")
	}
	if o.E2ERequests < 1 || o.MixTemplates < 1 || o.MixBatch < 1 || o.MixBurst < 1 || o.MixWorkers < 1 {
		return nil, fmt.Errorf("-e2e-requests, -mix-templates, -mix-batch, -mix-burst and -mix-workers must be 1 or more")
	}
	if o.GWRate <= 0 || o.GWDuration <= 0 || o.GWWaiting < 1 {
		return nil, fmt.Errorf("-gw-rate and -gw-duration must be above 0, -gw-waiting 1 or more")
	}
	if o.PartRequests < 1 || o.PartE2ERequests < 1 || o.PartQuotaRPM < 1 || o.PartQuotaWindow < quotaBurstWindow {
		return nil, fmt.Errorf("-part-requests, -part-e2e-requests and -part-quota-rpm must be 1 or more, -part-quota-window at least %s", quotaBurstWindow)
	}
	if o.MixSteadyRate <= 0 || o.MixLowRate <= 0 || o.MixSteadyDuration <= 0 || o.MixLowDuration <= 0 || o.MixMaxWait <= 0 {
		return nil, fmt.Errorf("-mix-steady-rate, -mix-low-rate, -mix-steady-duration, -mix-low-duration and -mix-max-wait must be above 0")
	}
	for _, s := range splitList(o.Only) {
		if !slices.Contains(scenarios, s) {
			return nil, fmt.Errorf("-only: unknown scenario %q, want some of %s", s, strings.Join(scenarios, ","))
		}
	}
	return o, nil
}

func run(args []string) int {
	o, err := parseOptions(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o.TmpDir, err = os.MkdirTemp("", "aibatch-bench-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	defer os.RemoveAll(o.TmpDir)
	if o.ProfileDir != "" {
		if err := os.MkdirAll(o.ProfileDir, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
	}

	r := newReport(o, os.Stderr)
	only := splitList(o.Only)
	steps := map[string]func() error{
		"micro": func() error {
			if o.Micro == "" {
				return nil
			}
			return scenarioMicro(o.Micro, r)
		},
		"throughput":    func() error { return scenarioThroughput(ctx, o, r) },
		"rates":         func() error { return scenarioRates(ctx, o, r) },
		"latency":       func() error { return scenarioLatency(ctx, o, r) },
		"inflight":      func() error { return scenarioInflight(ctx, o, r) },
		"memory":        func() error { return scenarioMemory(ctx, o, r) },
		"fault-cap":     func() error { return scenarioFaultCap(ctx, o, r) },
		"fault-refusal": func() error { return scenarioFaultRefusal(ctx, o, r) },
		"e2e":           func() error { return scenarioE2E(ctx, o, r) },
		"mixed-burst":   func() error { return scenarioMixedBurst(ctx, o, r) },
		"mixed-rates":   func() error { return scenarioMixedRates(ctx, o, r) },
		"async-combine": func() error { return scenarioAsyncCombine(ctx, o, r) },
		"gateway":       func() error { return scenarioGateway(ctx, o, r) },
		"partition":     func() error { return scenarioPartition(ctx, o, r) },
	}
	code := 0
	for _, name := range scenarios {
		if len(only) > 0 && !slices.Contains(only, name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		if err := steps[name](); err != nil {
			r.progress("%s FAILED: %v", name, err)
			r.failed(name, err)
			code = 1
			continue
		}
		r.progress("%s done in %s", name, time.Since(t0).Round(100*time.Millisecond))
	}
	r.finish()
	if err := r.writeTable(os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if err := r.writeJSON(o.Out); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	fmt.Printf("results written to %s\n", o.Out)
	return code
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// intsVar defines a flag holding a comma-separated list of whole numbers.
func intsVar(fs *flag.FlagSet, p *[]int, name string, def []int, usage string) {
	*p = def
	fs.Func(name, usage+fmt.Sprintf(" (default %v)", def), func(s string) error {
		var v []int
		for _, f := range splitList(s) {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				return fmt.Errorf("%q is not a whole number of 1 or more", f)
			}
			v = append(v, n)
		}
		*p = v
		return nil
	})
}

// floatsVar defines a flag holding a comma-separated list of positive
// numbers.
func floatsVar(fs *flag.FlagSet, p *[]float64, name string, def []float64, usage string) {
	*p = def
	fs.Func(name, usage+fmt.Sprintf(" (default %v)", def), func(s string) error {
		var v []float64
		for _, f := range splitList(s) {
			x, err := strconv.ParseFloat(f, 64)
			if err != nil || x <= 0 {
				return fmt.Errorf("%q is not a number above 0", f)
			}
			v = append(v, x)
		}
		*p = v
		return nil
	})
}
