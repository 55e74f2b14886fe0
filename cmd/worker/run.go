package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/internal/attempts"
	"github.com/aibatch/aibatch/internal/buildinfo"
	"github.com/aibatch/aibatch/internal/cost"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/internal/jobstore"
	"github.com/aibatch/aibatch/internal/metrics"
	"github.com/aibatch/aibatch/jetstream"
)

// run wires the worker from its configuration and serves until ctx ends:
// serve the probes, connect to NATS, build the engine, start the
// operator-facing parts (handing the admin server the engine), run.
func run(ctx context.Context, lookup envconfig.Lookuper) error {
	cfg, err := loadConfig(ctx, lookup)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	// The probes answer before anything else starts: /healthz while the
	// process runs, /readyz with what the worker waits for.
	_, adminAddrSet := lookup.Lookup("ADMIN_ADDR")
	adm, err := startAdmin(ctx, cfg, adminAddrSet, log)
	if err != nil {
		return err
	}
	defer shutdownAdmin(adm, log) // after a failed start; ops.stop does it otherwise
	report := func(check, reason string) {
		if adm != nil {
			adm.SetStarting(check, reason)
		}
	}
	b, err := connect(ctx, cfg, log, report)
	if err != nil {
		return stoppedBeforeStart(ctx, log, err)
	}
	defer b.close()
	report(admin.CheckStream, "setting up the streams and consumers")
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	parts, err := buildEngine(setupCtx, cfg, log, b)
	if err != nil {
		return stoppedBeforeStart(ctx, log, err)
	}
	o, err := startOps(setupCtx, opsDeps{cfg: cfg, admin: adm, log: log, broker: b, parts: parts})
	if err != nil {
		return stoppedBeforeStart(ctx, log, err)
	}
	logStarted(log, cfg, parts, o)
	return serve(ctx, log, parts.engine, o)
}

// stoppedBeforeStart returns err from a start-up step, unless ctx has
// ended: a stop signal during start-up is a stop, not a failure, so it logs
// that and returns nil.
func stoppedBeforeStart(ctx context.Context, log *zap.Logger, err error) error {
	if ctx.Err() == nil {
		return err
	}
	log.Info("worker stopped before it started")
	return nil
}

// serve runs the engine until ctx ends, then stops the operator-facing
// parts: the engine has stopped counting, so the last fleet update is
// complete.
func serve(ctx context.Context, log *zap.Logger, engine *batch.Engine, o *ops) error {
	err := engine.Run(ctx)
	o.stop()
	log.Info("worker stopped")
	return err
}

// engineParts is the engine and what the operator-facing parts read beside
// it.
type engineParts struct {
	engine   *batch.Engine
	lease    *holdLease
	lanes    []*jetstream.Queue // batch lane, urgent lane
	provider string
	registry *prometheus.Registry
	cost     *cost.Accountant
	// quota paces the provider calls; startFleet hands it the fleet.
	quota *quota
}

// buildEngine creates the streams and consumers, the provider, the metrics
// and cost observers and, in async mode, the job store, and builds the
// engine on them.
func buildEngine(ctx context.Context, cfg config, log *zap.Logger, b *broker) (*engineParts, error) {
	batchLane, urgentLane, pub, err := ensureTopology(ctx, log, b.js, cfg.topology())
	if err != nil {
		return nil, fmt.Errorf("set up streams: %w", err)
	}
	p, quota, err := newProvider(cfg, log, &fleetQuota{})
	if err != nil {
		return nil, err
	}
	obs, err := newObservers(cfg)
	if err != nil {
		return nil, err
	}
	if err := registerQuota(obs.registry, quota); err != nil {
		return nil, fmt.Errorf("set up metrics: %w", err)
	}
	opts, err := engineOptions(ctx, cfg, log, b, urgentLane, obs)
	if err != nil {
		return nil, err
	}
	lease := &holdLease{}
	opts = append(opts, batch.WithHoldLease(lease))
	engine, err := batch.New(engineConfig(cfg, b), batchLane, pub, p, opts...)
	if err != nil {
		return nil, fmt.Errorf("build the engine: %w", err)
	}
	if err := obs.metrics.RegisterInFlight(func() int64 { return engine.Stats().InFlight }); err != nil {
		return nil, fmt.Errorf("set up metrics: %w", err)
	}
	// The engine polls the batch lane's backlog; the urgent lane's is read
	// when /metrics is scraped.
	if err := obs.metrics.RegisterUrgentBacklog(urgentLane.Backlog, 0); err != nil {
		return nil, fmt.Errorf("set up metrics: %w", err)
	}
	return &engineParts{
		engine: engine, lease: lease, lanes: []*jetstream.Queue{batchLane, urgentLane},
		provider: p.Name(), registry: obs.registry, cost: obs.cost, quota: quota,
	}, nil
}

// engineConfig is the engine's configuration, with results bounded to fit
// the server's max_payload with room for headers.
func engineConfig(cfg config, b *broker) batch.Config {
	ec := cfg.engine()
	if mp := int(b.nc.MaxPayload()); mp > 16<<10 {
		ec.MaxResultBytes = mp - 8<<10
	}
	return ec
}

// engineOptions are the engine's urgent lane, logger, observers, attempt
// records (ATTEMPTS_BUCKET) and, in async mode, its job store, opened in
// JOBS_BUCKET.
func engineOptions(ctx context.Context, cfg config, log *zap.Logger, b *broker, urgent *jetstream.Queue, obs *observers) ([]batch.Option, error) {
	opts := []batch.Option{
		batch.WithUrgentQueue(urgent),
		batch.WithLogger(log.Named("batch")),
		batch.WithObserver(obs.metrics),
		batch.WithObserver(costObserver{a: obs.cost}),
	}
	attemptStore, err := attempts.Ensure(ctx, b.js, attempts.Config{Bucket: cfg.AttemptsBucket, TTL: 2 * cfg.RequestTTL, Replicas: cfg.StreamReplicas})
	if err != nil {
		return nil, fmt.Errorf("set up ATTEMPTS_BUCKET=%s: %w", cfg.AttemptsBucket, err)
	}
	shadow, err := cfg.shadow()
	if err != nil {
		return nil, err
	}
	opts = append(opts, batch.WithAttemptStore(attemptStore), batch.WithShadow(shadow))
	if opts, err = withBudgets(ctx, cfg, b.js, opts); err != nil {
		return nil, err
	}
	if opts, err = withResponseCache(ctx, cfg, b.js, opts); err != nil {
		return nil, err
	}
	if cfg.BatchMode != "async" {
		return opts, nil
	}
	jobs, err := jobstore.Open(ctx, b.js, jobstore.Config{Bucket: cfg.JobsBucket, Replicas: cfg.StreamReplicas})
	if err != nil {
		return nil, fmt.Errorf("set up JOBS_BUCKET=%s: %w", cfg.JobsBucket, err)
	}
	return append(opts, batch.WithJobStore(jobs)), nil
}

// observers are what watches the engine: its Prometheus metrics, in a
// registry with the Go runtime's and the process's, and the cost
// accountant, whose estimates the registry exposes too.
type observers struct {
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	cost     *cost.Accountant
}

// newObservers builds the registry, the metrics and the accountant.
func newObservers(cfg config) (*observers, error) {
	reg := prometheus.NewRegistry()
	bi := buildinfo.Get()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.BuildInfo(bi.Version, bi.Commit, bi.GoVersion))
	m, err := metrics.New(reg, metrics.WithSyncMode(syncMode(cfg.BatchMode)))
	if err != nil {
		return nil, fmt.Errorf("set up metrics: %w", err)
	}
	accountant, err := newAccountant(cfg)
	if err != nil {
		return nil, err
	}
	if err := registerCost(reg, accountant); err != nil {
		return nil, err
	}
	return &observers{registry: reg, metrics: m, cost: accountant}, nil
}

// syncMode is the metrics' mode label of synchronous calls in BATCH_MODE:
// in async mode they are the MAX_WAIT fallback's, which are combined.
func syncMode(batchMode string) string {
	if batchMode == "async" {
		return metrics.ModeCombined
	}
	return batchMode
}

// logStarted logs the settings the worker runs with.
func logStarted(log *zap.Logger, cfg config, p *engineParts, o *ops) {
	ec := p.engine.Config()
	bi := buildinfo.Get()
	log.Info("worker started",
		zap.String("worker", o.worker), zap.String("version", bi.Version), zap.String("commit", bi.Commit),
		zap.String("provider", p.provider), zap.String("mode", cfg.BatchMode), zap.String("model", cfg.Model),
		zap.Bool("batched", !ec.Immediate), zap.Int("max_batch_size", ec.MaxBatchSize),
		zap.Duration("batch_interval", ec.Interval), zap.Duration("max_wait", ec.MaxWait),
		zap.String("stream", cfg.Stream), zap.String("consumer", cfg.Consumer),
		zap.String("admin_addr", o.adminAddr()))
}

// newLogger builds the zap logger at LOG_LEVEL in LOG_FORMAT (json, or
// console for people).
func newLogger(level, format string) (*zap.Logger, error) {
	zc, err := loggerConfig(level, format)
	if err != nil {
		return nil, err
	}
	return zc.Build()
}

// loggerConfig is newLogger's configuration.
func loggerConfig(level, format string) (zap.Config, error) {
	lvl, err := zapcore.ParseLevel(strings.ToLower(level))
	if err != nil {
		return zap.Config{}, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", level)
	}
	zc := zap.NewProductionConfig()
	if format == "console" {
		zc = zap.NewDevelopmentConfig()
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.DisableStacktrace = true
	// Durations carry their unit ("1.5s", "250ms"): the production
	// encoder's default writes bare seconds (1.5), which a reader of
	// max_wait or latency cannot tell from milliseconds.
	zc.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder
	return zc, nil
}

// holdLease is the engine's batch.HoldLease: the fleet's lease once the
// fleet bucket is open, and "holds" before that or without one
// (STATS_BUCKET empty), when every worker gathers partial groups.
type holdLease struct{ lease atomic.Pointer[fleet.Lease] }

func (h *holdLease) set(l *fleet.Lease) { h.lease.Store(l) }

// Held reports whether this worker gathers partial groups.
func (h *holdLease) Held() bool {
	l := h.lease.Load()
	return l == nil || l.Held()
}
