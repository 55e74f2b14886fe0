package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/internal/jobstore"
	"github.com/aibatch/aibatch/internal/metrics"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/wire"
)

// run wires the worker from its configuration and serves until ctx ends.
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

	url := cfg.NATSURL
	if url == "" {
		ns, err := startEmbedded(cfg)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		url = ns.ClientURL()
		log.Info("embedded NATS server started", zap.String("url", url), zap.String("store_dir", cfg.StoreDir))
	}
	var authOpts []nats.Option
	if cfg.NATSURL != "" {
		// The embedded server needs no credentials; an external one may.
		if authOpts, err = cfg.auth().Options(); err != nil {
			return err
		}
	}
	closed := make(chan struct{})
	var closeOnce sync.Once
	nc, err := connectWhenUp(ctx, log, url, append(authOpts,
		nats.Name("aibatch-worker"),
		nats.ClosedHandler(func(*nats.Conn) { closeOnce.Do(func() { close(closed) }) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("NATS reconnected", zap.String("url", c.ConnectedUrlRedacted()))
		}),
	)...)
	if err != nil {
		if ctx.Err() != nil {
			log.Info("worker stopped before it started")
			return nil
		}
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer func() {
		// Drain flushes the last acks before the connection (and an
		// embedded server) goes away.
		if err := nc.Drain(); err == nil {
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
			}
		}
	}()

	js, err := natsjs.New(nc)
	if err != nil {
		return fmt.Errorf("open JetStream: %w", err)
	}
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	batchLane, urgentLane, pub, err := ensureTopology(setupCtx, log, js, cfg.topology())
	if err != nil {
		if ctx.Err() != nil {
			// A stop signal during setup is a stop, not a failure.
			log.Info("worker stopped before it started")
			return nil
		}
		return fmt.Errorf("set up streams: %w", err)
	}
	p, err := newProvider(cfg)
	if err != nil {
		return err
	}
	reg, observer, err := newMetrics(cfg.BatchMode)
	if err != nil {
		return err
	}
	accountant, err := newAccountant(cfg)
	if err != nil {
		return err
	}
	if err := registerCost(reg, accountant); err != nil {
		return err
	}
	opts := []batch.Option{
		batch.WithUrgentQueue(urgentLane),
		batch.WithLogger(log.Named("batch")),
		batch.WithObserver(observer),
		batch.WithObserver(costObserver{accountant}),
	}
	if cfg.BatchMode == "async" {
		jobs, err := jobstore.Open(setupCtx, js, jobstore.Config{Bucket: cfg.JobsBucket, Replicas: cfg.StreamReplicas})
		if err != nil {
			return fmt.Errorf("set up JOBS_BUCKET=%s: %w", cfg.JobsBucket, err)
		}
		opts = append(opts, batch.WithJobStore(jobs))
	}
	ec := cfg.engine()
	if mp := int(nc.MaxPayload()); mp > 16<<10 {
		// Results must fit the server's max_payload, with room for headers.
		ec.MaxResultBytes = mp - 8<<10
	}
	engine, err := batch.New(ec, batchLane, pub, p, opts...)
	if err != nil {
		return err
	}
	if err := observer.RegisterInFlight(func() int64 { return engine.Stats().InFlight }); err != nil {
		return err
	}
	_, adminAddrSet := lookup.Lookup("ADMIN_ADDR")
	ops, err := startOps(setupCtx, opsDeps{
		cfg: cfg, adminAddrSet: adminAddrSet, log: log, nc: nc, js: js, engine: engine,
		reg: reg, provider: p.Name(), lanes: []*jetstream.Queue{batchLane, urgentLane}, cost: accountant,
	})
	if err != nil {
		if ctx.Err() != nil {
			log.Info("worker stopped before it started")
			return nil
		}
		return err
	}
	ec = engine.Config()
	log.Info("worker started",
		zap.String("worker", ops.worker),
		zap.String("provider", p.Name()), zap.String("mode", cfg.BatchMode), zap.String("model", cfg.Model),
		zap.Bool("batched", !ec.Immediate), zap.Int("max_batch_size", ec.MaxBatchSize),
		zap.Duration("batch_interval", ec.Interval), zap.Duration("max_wait", ec.MaxWait),
		zap.String("stream", cfg.Stream), zap.String("consumer", cfg.Consumer),
		zap.String("admin_addr", ops.adminAddr()))
	err = engine.Run(ctx)
	// The engine has stopped counting: the last fleet update is complete.
	ops.stop()
	log.Info("worker stopped")
	return err
}

// newMetrics returns the worker's Prometheus registry (Go runtime and
// process metrics, and the engine's aibatch_* metrics) and the observer
// that feeds it, labelling synchronous calls with BATCH_MODE's mode.
func newMetrics(batchMode string) (*prometheus.Registry, *metrics.Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg, metrics.WithSyncMode(syncMode(batchMode)))
	if err != nil {
		return nil, nil, fmt.Errorf("set up metrics: %w", err)
	}
	return reg, m, nil
}

// syncMode is the metrics' mode label of synchronous calls in BATCH_MODE:
// in async mode they are the MAX_WAIT fallback's, which are combined.
func syncMode(batchMode string) string {
	if batchMode == "async" {
		return metrics.ModeCombined
	}
	return batchMode
}

// opsDeps is what the operator-facing parts are built from.
type opsDeps struct {
	cfg config
	// adminAddrSet is true when ADMIN_ADDR was set rather than defaulted: a
	// set address that cannot be bound stops the worker, the default only
	// logs a warning (a second worker on the same machine still runs).
	adminAddrSet bool
	log          *zap.Logger
	nc           *nats.Conn
	js           natsjs.JetStream
	engine       *batch.Engine
	reg          *prometheus.Registry
	provider     string
	lanes        []*jetstream.Queue
	cost         admin.CostTotals
}

// ops are the worker's operator-facing parts: the fleet totals, the flush
// responder on the control subject and the admin API. Each is nil when
// turned off.
type ops struct {
	worker    string
	log       *zap.Logger
	fleet     *fleet.Totals
	stopFleet context.CancelFunc
	fleetDone chan struct{}
	responder *fleet.FlushResponder
	admin     *admin.Server
}

// startOps starts the fleet totals, the flush responder and the admin API.
// On an error it stops what it started.
func startOps(ctx context.Context, d opsDeps) (*ops, error) {
	o := &ops{worker: workerID(), log: d.log}
	if err := o.startFleet(ctx, d); err != nil {
		o.stop()
		return nil, err
	}
	responder, err := fleet.ServeFlush(d.nc, "", o.worker, d.engine, d.cfg.ShutdownTimeout)
	if err != nil {
		o.stop()
		return nil, fmt.Errorf("serve %s: %w", wire.ControlFlushSubject, err)
	}
	o.responder = responder
	if err := o.startAdmin(ctx, d); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

// startFleet opens the stats bucket and adds this worker's counts to it
// every STATS_FLUSH_INTERVAL until stop.
func (o *ops) startFleet(ctx context.Context, d opsDeps) error {
	if d.cfg.StatsBucket == "" {
		return nil
	}
	totals, err := fleet.Open(ctx, d.js, fleet.Config{
		Bucket: d.cfg.StatsBucket, Interval: d.cfg.StatsFlushInterval, Replicas: d.cfg.StreamReplicas,
	})
	if err != nil {
		return fmt.Errorf("set up STATS_BUCKET=%s (empty turns fleet totals off): %w", d.cfg.StatsBucket, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o.fleet, o.stopFleet, o.fleetDone = totals, cancel, make(chan struct{})
	read := func() fleet.Counters { return fleet.CountersOf(d.engine.Stats()) }
	go func() {
		defer close(o.fleetDone)
		err := totals.Run(runCtx, read, func(err error) { o.log.Warn("update fleet totals", zap.Error(err)) })
		if err != nil {
			o.log.Warn("final update of fleet totals", zap.Error(err))
		}
	}()
	return nil
}

// startAdmin serves the admin API on ADMIN_ADDR.
func (o *ops) startAdmin(ctx context.Context, d opsDeps) error {
	if d.cfg.AdminAddr == "" {
		return nil
	}
	consumers := make([]admin.Consumer, len(d.lanes))
	for i, l := range d.lanes {
		consumers[i] = l.Consumer()
	}
	acfg := admin.Config{
		Addr:     d.cfg.AdminAddr,
		Token:    d.cfg.AdminToken,
		Worker:   o.worker,
		Engine:   d.engine,
		Ready:    admin.Readiness{NATS: d.nc, Consumers: consumers, Provider: d.provider},
		Gatherer: d.reg,
		Cost:     d.cost,
		Settings: d.cfg.settings(),
		FlushFleet: func(ctx context.Context) ([]fleet.FlushReply, error) {
			return fleet.FlushAll(ctx, d.nc, "", 0)
		},
		Log: d.log.Named("admin"),
	}
	if o.fleet != nil {
		acfg.Fleet = o.fleet
	}
	srv, err := admin.New(acfg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		if d.adminAddrSet {
			return err
		}
		o.log.Warn("admin API not started: the default address is taken (set ADMIN_ADDR to another address, or to empty to turn it off)", zap.Error(err))
		return nil
	}
	o.admin = srv
	return nil
}

// adminAddr is where the admin API listens, or "" when it does not.
func (o *ops) adminAddr() string {
	if o.admin == nil {
		return ""
	}
	return o.admin.Addr()
}

// stop stops answering flush requests, makes the last fleet update and
// shuts the admin API down, in that order.
func (o *ops) stop() {
	if o.responder != nil {
		if err := o.responder.Stop(); err != nil {
			o.log.Warn("stop flush responder", zap.Error(err))
		}
	}
	if o.stopFleet != nil {
		o.stopFleet()
		<-o.fleetDone
	}
	if o.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := o.admin.Shutdown(ctx); err != nil {
			o.log.Warn("shut down admin API", zap.Error(err))
		}
	}
}

// workerID names this worker in flush replies and batch-stats: the host
// name (a pod's name on Kubernetes) and the process id.
func workerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

func startEmbedded(cfg config) (*server.Server, error) {
	host, portText, _ := net.SplitHostPort(cfg.NATSListen)
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("NATS_LISTEN=%q: port is not a number", cfg.NATSListen)
	}
	return jetstream.RunServer(jetstream.ServerConfig{Host: host, Port: port, StoreDir: cfg.StoreDir})
}

func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(strings.ToLower(level))
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", level)
	}
	zc := zap.NewProductionConfig()
	if format == "console" {
		zc = zap.NewDevelopmentConfig()
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.DisableStacktrace = true
	return zc.Build()
}

// setupTimeout bounds waiting for NATS and creating the streams at start-up.
const setupTimeout = 60 * time.Second

// connectWhenUp connects to NATS, waiting (until setupTimeout) for a server
// that is not up yet, as when the worker and NATS start together. Other
// errors, such as refused credentials, return at once.
func connectWhenUp(ctx context.Context, log *zap.Logger, url string, opts ...nats.Option) (*nats.Conn, error) {
	deadline := time.Now().Add(setupTimeout)
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil || !errors.Is(err, nats.ErrNoServers) || time.Now().After(deadline) {
			return nc, err
		}
		log.Info("waiting for NATS", zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// ensureTopology creates the streams and consumers, trying again while the
// server does not answer in time: on a fresh cluster, workers creating the
// same streams at once can time out while the cluster agrees on them.
func ensureTopology(ctx context.Context, log *zap.Logger, js natsjs.JetStream, t jetstream.Topology) (*jetstream.Queue, *jetstream.Queue, *jetstream.Publisher, error) {
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, u, p, err := jetstream.Ensure(attempt, js, t)
		cancel()
		if err == nil || ctx.Err() != nil || !isTimeout(err) {
			return b, u, p, err
		}
		log.Warn("set up streams: no answer in time, trying again", zap.Error(err))
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, natsjs.ErrNoStreamResponse)
}
