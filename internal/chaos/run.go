package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/provider/openaitest"
)

// Stream and consumer names the workers use by default.
const (
	requestStream  = "AI_REQUESTS"
	resultStream   = "AI_RESULTS"
	deadStream     = "AI_DEAD"
	batchConsumer  = "aibatch"
	urgentConsumer = "aibatch_urgent"
)

// Run runs every scenario of cfg and reports what each injected and what
// the checker found. Breaches of the invariant are in the Report (see
// Report.Problems), not in the error: Run returns an error only when it
// could not run at all (a bad Config, a worker that does not build) or ctx
// ended. A scenario whose broker or workers would not start has its Err set.
func Run(ctx context.Context, cfg Config) (Report, error) {
	start := time.Now()
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	dir, temporary := cfg.Dir, cfg.Dir == ""
	if temporary {
		var err error
		if dir, err = os.MkdirTemp("", "aibatch-chaos-"); err != nil {
			return Report{}, fmt.Errorf("chaos: create a work directory: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return Report{}, fmt.Errorf("chaos: create the work directory: %w", err)
	}
	log := &lockedWriter{w: cfg.Log}
	bin := cfg.WorkerBin
	if bin == "" {
		fmt.Fprintf(log, "building the worker (race detector: %v)\n", cfg.Race)
		var err error
		if bin, err = BuildWorker(ctx, dir, cfg.Race); err != nil {
			if temporary {
				_ = os.RemoveAll(dir)
			}
			return Report{}, err
		}
	}

	shares := shareOut(cfg.Requests, cfg.Scenarios)
	ports := &portPool{}
	reports := make([]ScenarioReport, len(cfg.Scenarios))
	slots := make(chan struct{}, cfg.Parallel)
	var wg sync.WaitGroup
	for i, sc := range cfg.Scenarios {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			r := &scenarioRun{cfg: cfg, sc: sc, n: shares[i], bin: bin, dir: filepath.Join(dir, sc.Name), seed: seed + uint64(i)*7919, log: log, ports: ports}
			reports[i] = r.run(ctx)
		}()
	}
	wg.Wait()
	rep := Report{Seed: seed, Wall: time.Since(start), Dir: dir}
	for _, r := range reports {
		if r.Name != "" { // not started when ctx ended first
			rep.Scenarios = append(rep.Scenarios, r)
		}
	}
	if temporary && rep.Problems() == 0 {
		_ = os.RemoveAll(dir)
		rep.Dir = ""
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("chaos: stopped: %w", err)
	}
	return rep, nil
}

// shareOut splits n requests over the scenarios by weight, at least one
// each.
func shareOut(n int, scs []Scenario) []int {
	total := 0
	for _, s := range scs {
		total += max(s.Weight, 1)
	}
	out := make([]int, len(scs))
	given := 0
	for i, s := range scs {
		out[i] = max(1, n*max(s.Weight, 1)/total)
		given += out[i]
	}
	out[len(out)-1] += max(0, n-given)
	return out
}

// lockedWriter serialises the progress lines of scenarios running at once.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// scenarioRun is one scenario while it runs.
type scenarioRun struct {
	cfg  Config
	sc   Scenario
	n    int
	bin  string
	dir  string
	seed uint64
	log  io.Writer
	// ports hands out the brokers' ports, shared by scenarios running at
	// once.
	ports *portPool

	broker *broker
	proxy  *Proxy
	pool   *workerPool
	js     jetstream.JetStream
	start  time.Time

	mu  sync.Mutex // guards rep while faults run
	rep ScenarioReport
}

func (r *scenarioRun) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%6.2fs %-16s %s\n", time.Since(r.start).Seconds(), r.sc.Name, fmt.Sprintf(format, args...))
}

// harnessError records the first failure of the harness itself.
func (r *scenarioRun) harnessError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rep.Err == nil {
		r.rep.Err = err
	}
	r.logf("harness error: %v", err)
}

// run sets the scenario up, publishes while injecting faults, drains, and
// checks.
func (r *scenarioRun) run(ctx context.Context) ScenarioReport {
	r.start = time.Now()
	r.rep = ScenarioReport{Name: r.sc.Name, Faults: r.sc.Faults(), Cluster: r.sc.Cluster, WorkerKills: map[string]int{}}
	if err := r.execute(ctx); err != nil {
		r.harnessError(err)
	}
	r.rep.Wall = time.Since(r.start)
	r.logf("done in %s: %d problems", r.rep.Wall.Round(10*time.Millisecond), r.rep.Problems())
	return r.rep
}

func (r *scenarioRun) execute(ctx context.Context) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("chaos: scenario directory: %w", err)
	}
	r.logf("starting %s: %d requests, %d workers; faults: %s", map[bool]string{false: "one NATS server", true: "a 3-node JetStream cluster"}[r.sc.Cluster], r.n, r.cfg.Workers, r.sc.Faults())
	b, err := startBroker(filepath.Join(r.dir, "nats"), r.sc.Name, r.sc.Cluster, r.ports)
	if err != nil {
		return err
	}
	r.broker = b
	defer b.close()
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = b.waitReady(readyCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("chaos: cluster elects no JetStream meta leader: %w", err)
	}

	upstream := openaitest.NewServer(openaitest.WithAPIKey(apiKey))
	defer upstream.Close()
	var rates FaultRates
	if r.sc.ProviderFaults {
		rates = r.cfg.Rates
	}
	proxy, err := NewProxy(ProxyConfig{Upstream: upstream.URL, Slots: r.cfg.Workers, Rates: rates, Seed: r.seed})
	if err != nil {
		return err
	}
	r.proxy = proxy
	defer proxy.Close()

	env := WorkerEnv()
	for k, v := range r.cfg.WorkerEnv {
		env[k] = v
	}
	env["NATS_URL"] = b.urls()
	env["STREAM_REPLICAS"] = "1"
	if r.sc.Cluster {
		env["STREAM_REPLICAS"] = "3"
	}
	if r.sc.ShadowRate > 0 {
		env["SHADOW_RATE"] = strconv.FormatFloat(r.sc.ShadowRate, 'g', -1, 64)
	}
	maxBytes, err := parseSize(env["MAX_REQUEST_BYTES"])
	if err != nil {
		return err
	}
	r.pool = newWorkerPool(r.bin, r.dir, env, r.cfg.Workers, proxy.URL, r.logf)
	stopped := false
	defer func() {
		if !stopped {
			r.pool.stopAll(10 * time.Second)
		}
	}()
	// The first worker creates the streams alone. Workers that start at the
	// same moment on a fresh cluster exit after 30s: of their concurrent
	// CreateOrUpdateStream calls (jetstream.Ensure) only the first gets an
	// answer. That is a finding of its own, not what the scenarios test.
	if err := r.pool.start(0); err != nil {
		return err
	}

	nc, err := nats.Connect(b.urls(), nats.Name("aibatch-chaos"), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		return fmt.Errorf("chaos: connect to NATS: %w", err)
	}
	defer nc.Close()
	if r.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("chaos: open JetStream: %w", err)
	}
	if err := r.waitStreams(ctx); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = r.pool.waitStarted(startCtx, 0)
	cancel()
	if err != nil {
		return err
	}
	for i := 1; i < r.cfg.Workers; i++ {
		if err := r.pool.start(i); err != nil {
			return err
		}
	}
	r.logf("workers started; publishing")

	rng := rand.New(rand.NewPCG(r.seed, 1))
	poisonShare := 0.0
	if r.sc.Poison {
		poisonShare = r.cfg.PoisonShare
	}
	reqs := planTraffic(r.sc.Name, r.n, poisonShare, r.cfg.UrgentShare, maxBytes, rng)
	r.inject(ctx, reqs, rng)
	r.drain(ctx)

	stopped = true
	for _, p := range r.pool.stopAll(30 * time.Second) {
		r.rep.WorkerExits = append(r.rep.WorkerExits, p)
	}
	return r.collect(ctx, reqs)
}

// inject publishes reqs over the fault phase while the scenario's faults
// run, and returns once the faults have stopped, with every node and worker
// up again (a lost worker excepted). The phase lasts until periodTail after
// the scenario's last provider period, if that is later than its traffic
// would take at Config.Rate.
func (r *scenarioRun) inject(ctx context.Context, reqs []*sentRequest, rng *rand.Rand) {
	phase := max(r.cfg.MinFaultPhase, time.Duration(len(reqs))*time.Second/time.Duration(r.cfg.Rate))
	if end := r.sc.periodsEnd(); end > 0 {
		phase = max(phase, end+periodTail)
	}
	start := time.Now()
	faultCtx, stopFaults := context.WithTimeout(ctx, phase)
	defer stopFaults()
	var faults sync.WaitGroup
	for _, f := range []struct {
		on  bool
		run func(context.Context, *rand.Rand)
	}{
		{r.sc.KillWorkers, r.killWorkers}, {r.sc.RestartServer, r.restartServer}, {r.sc.KillLeader, r.killLeader}, {r.sc.LoseWorker, r.loseWorker},
		{r.sc.Outage.on(), r.providerPeriod(PeriodOutage, r.sc.Outage)}, {r.sc.KeyRejected.on(), r.providerPeriod(PeriodKeyRejected, r.sc.KeyRejected)},
	} {
		if !f.on {
			continue
		}
		faults.Add(1)
		frng := rand.New(rand.NewPCG(r.seed, rng.Uint64()))
		go func() {
			defer faults.Done()
			f.run(faultCtx, frng)
		}()
	}
	produce(ctx, r.js, reqs, produceConfig{over: phase, publishers: 8, giveUp: 30 * time.Second})
	<-faultCtx.Done()
	faults.Wait()
	r.rep.FaultPhase = time.Since(start)
	r.logf("published %d requests; faults stopped; draining", len(reqs))
}

// drain waits, up to Config.Drain, until the request stream is empty.
func (r *scenarioRun) drain(ctx context.Context) {
	start := time.Now()
	drainCtx, cancel := context.WithTimeout(ctx, r.cfg.Drain)
	err := poll(drainCtx, 50*time.Millisecond, func() bool { return r.pending(drainCtx) == 0 })
	cancel()
	r.rep.Drain = time.Since(start)
	if err != nil {
		r.logf("AI_REQUESTS not empty after %s: %s", r.cfg.Drain, r.consumerState(ctx))
		return
	}
	r.logf("drained in %s", r.rep.Drain.Round(10*time.Millisecond))
}

// collect reads the streams back, checks them and fills the report.
func (r *scenarioRun) collect(ctx context.Context, reqs []*sentRequest) error {
	readCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	results, err := retryRead(readCtx, r, func(c context.Context) ([]storedMsg, error) { return readStream(c, r.js, resultStream) })
	if err != nil {
		return err
	}
	dead, err := retryRead(readCtx, r, func(c context.Context) ([]storedMsg, error) { return readStream(c, r.js, deadStream) })
	if err != nil {
		return err
	}
	leftover, err := retryRead(readCtx, r, func(c context.Context) ([]storedMsg, error) { return readByGet(c, r.js, requestStream, 1000) })
	if err != nil {
		return err
	}
	f := check(reqs, results, dead, leftover)

	rep := &r.rep
	rep.Sent = len(reqs)
	for _, q := range reqs {
		rep.PublishRetries += max(q.attempts-1, 0)
	}
	rep.Accepted, rep.Unconfirmed, rep.Poison, rep.Urgent = f.accepted, f.unconfirmed, f.poison, f.urgent
	rep.ResultsOK, rep.Errors, rep.DeadLetters = f.resultsOK, f.resultsError, f.deadLetters
	rep.Duplicates, rep.Lost, rep.Phantoms, rep.WrongOutputs = f.duplicates, f.lost, f.phantoms, f.wrongOutputs
	rep.Innocent, rep.Violations = f.innocent, f.violations
	rep.MaxQueuedBatch, rep.MaxQueuedUrgent = f.maxQueuedBatch, f.maxQueuedUrgent
	rep.Evidence = f.evidence()
	if f.leftover > 0 {
		rep.Evidence = append(rep.Evidence, "consumer state after the drain: "+r.consumerState(readCtx))
	}
	for _, bad := range r.pool.scanLogs(apiKey) {
		rep.Violations++
		rep.Evidence = append(rep.Evidence, bad)
	}
	rep.ShadowSamples = r.pool.shadowSamples()
	ps := r.proxy.Stats()
	rep.ProviderCalls, rep.ProviderFaults = ps.Calls, ps.Faults
	for _, pd := range ps.Periods {
		pr := PeriodReport{Kind: pd.Kind, Statuses: pd.Statuses, At: pd.Start.Sub(r.start), For: pd.End.Sub(pd.Start), Failed: pd.Failed, ByStatus: pd.ByStatus, Recovery: -1}
		if !pd.Recovered.IsZero() {
			pr.Recovery = pd.Recovered.Sub(pd.End)
		}
		rep.Periods = append(rep.Periods, pr)
	}
	restarts, exits := r.pool.stats()
	rep.WorkerRestarts = restarts
	rep.WorkerExits = append(rep.WorkerExits, exits...)
	for _, e := range rep.WorkerExits {
		if strings.Contains(e, "with code "+strconv.Itoa(raceExitCode)) {
			rep.Violations++
			rep.Evidence = append(rep.Evidence, "data race: "+e)
		}
	}
	return nil
}

// retryRead calls read until it succeeds, up to 5 times while ctx lasts: a
// cluster whose stream leader just moved may answer "no responders" for a
// moment. It returns read's last error.
func retryRead(ctx context.Context, r *scenarioRun, read func(context.Context) ([]storedMsg, error)) ([]storedMsg, error) {
	var err error
	for try := 1; ; try++ {
		var msgs []storedMsg
		if msgs, err = read(ctx); err == nil {
			return msgs, nil
		}
		if try == 5 || !wait(ctx, time.Duration(try)*500*time.Millisecond) {
			return nil, err
		}
		r.logf("reading the streams back failed (%v); trying again", err)
	}
}

// parseSize reads a size the way the worker does: bytes, or a number with
// KiB, MiB, KB, MB or B.
func parseSize(val string) (int, error) {
	s := strings.TrimSpace(val)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000 * 1000}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("chaos: MAX_REQUEST_BYTES=%q: want bytes such as 65536, or 64KiB, 1MiB", val)
	}
	return n * mult, nil
}

// waitStreams waits until the workers have created the streams and both
// lanes' consumers.
func (r *scenarioRun) waitStreams(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	exists := func(get func(context.Context) error) func() bool {
		return func() bool {
			c, cancel := context.WithTimeout(wctx, 2*time.Second)
			defer cancel()
			return get(c) == nil
		}
	}
	for _, name := range []string{requestStream, resultStream, deadStream} {
		if err := poll(wctx, 50*time.Millisecond, exists(func(c context.Context) error { _, err := r.js.Stream(c, name); return err })); err != nil {
			return fmt.Errorf("chaos: the workers did not create stream %s: %w", name, err)
		}
	}
	for _, name := range []string{batchConsumer, urgentConsumer} {
		if err := poll(wctx, 50*time.Millisecond, exists(func(c context.Context) error { _, err := r.js.Consumer(c, requestStream, name); return err })); err != nil {
			return fmt.Errorf("chaos: the workers did not create consumer %s: %w", name, err)
		}
	}
	return nil
}

// pending returns the requests in AI_REQUESTS now, or -1 when it cannot be
// read.
func (r *scenarioRun) pending(ctx context.Context) int64 {
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := r.js.Stream(c, requestStream)
	if err != nil {
		return -1
	}
	info, err := s.Info(c)
	if err != nil {
		return -1
	}
	return int64(info.State.Msgs)
}

// consumerState describes both lanes' consumers, as evidence for requests
// left in the stream.
func (r *scenarioRun) consumerState(ctx context.Context) string {
	out := fmt.Sprintf("%d requests in %s", r.pending(ctx), requestStream)
	for _, name := range []string{batchConsumer, urgentConsumer} {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		cons, err := r.js.Consumer(c, requestStream, name)
		if err == nil {
			var info *jetstream.ConsumerInfo
			if info, err = cons.Info(c); err == nil {
				out += fmt.Sprintf("; %s: pending %d, ack pending %d, redelivered %d, waiting pulls %d, delivered stream seq %d, ack floor %d",
					name, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting, info.Delivered.Stream, info.AckFloor.Stream)
			}
		}
		cancel()
		if err != nil {
			out += fmt.Sprintf("; %s: %v", name, err)
		}
	}
	return out
}

// readByGet reads up to limit messages of a stream one by one, skipping
// deleted ones (a WorkQueue stream takes no second consumer on the same
// subjects).
func readByGet(ctx context.Context, js jetstream.JetStream, name string, limit int) ([]storedMsg, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("chaos: open stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("chaos: read stream %s: %w", name, err)
	}
	var out []storedMsg
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && len(out) < limit; {
		// The next message at or after seq: deleted ones are skipped.
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("chaos: read %s from seq %d: %w", name, seq, err)
		}
		out = append(out, storedMsg{seq: m.Sequence, subject: m.Subject, header: m.Header, data: m.Data})
		seq = m.Sequence + 1
	}
	return out, nil
}
