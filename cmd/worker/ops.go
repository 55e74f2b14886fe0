package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/wire"
)

// ops are the worker's operator-facing parts: the fleet totals, the flush
// responder on the control subject and the admin API, which also serves
// the metrics. Each is nil when turned off.
type ops struct {
	worker    string
	log       *zap.Logger
	fleet     *fleet.Totals
	stopFleet context.CancelFunc
	fleetDone chan struct{}
	responder *fleet.FlushResponder
	admin     *admin.Server
}

// opsDeps is what the operator-facing parts are built from.
type opsDeps struct {
	cfg config
	// admin is the admin server startAdmin started, or nil when it is off.
	admin  *admin.Server
	log    *zap.Logger
	broker *broker
	parts  *engineParts
}

// startOps starts the fleet totals, the flush responder and the admin API
// with the metrics. On an error it stops what it started.
func startOps(ctx context.Context, d opsDeps) (*ops, error) {
	o := &ops{worker: workerID(), log: d.log}
	if err := o.start(ctx, d); err != nil {
		o.stop()
		return nil, err
	}
	return o, nil
}

// start starts the parts in order: the admin API, serving the probes since
// start-up, gets the engine last, so it reports a worker whose other parts
// run.
func (o *ops) start(ctx context.Context, d opsDeps) error {
	if err := o.startFleet(ctx, d); err != nil {
		return err
	}
	if err := o.serveFlush(d); err != nil {
		return err
	}
	return o.attachAdmin(d)
}

// startFleet opens the stats bucket and adds this worker's counts to it
// every STATS_FLUSH_INTERVAL until stop.
func (o *ops) startFleet(ctx context.Context, d opsDeps) error {
	if d.cfg.StatsBucket == "" {
		if d.cfg.ProviderRPM > 0 || d.cfg.ProviderTPM > 0 {
			o.log.Warn("STATS_BUCKET is empty: this worker keeps to the whole PROVIDER_RPM and PROVIDER_TPM alone, not its share of the fleet's",
				zap.Int("provider_rpm", d.cfg.ProviderRPM), zap.Int("provider_tpm", d.cfg.ProviderTPM))
		}
		return nil
	}
	totals, err := fleet.Open(ctx, d.broker.js, fleet.Config{
		Bucket: d.cfg.StatsBucket, Interval: d.cfg.StatsFlushInterval, Replicas: d.cfg.StreamReplicas,
	})
	if err != nil {
		return fmt.Errorf("set up STATS_BUCKET=%s (empty turns fleet totals off): %w", d.cfg.StatsBucket, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o.fleet, o.stopFleet, o.fleetDone = totals, cancel, make(chan struct{})
	engine := d.parts.engine
	read := func() fleet.Counters { return fleet.CountersOf(engine.Stats()) }
	// One holder per request stream and consumer: the fleet bucket may
	// serve the workers of several partitions.
	lease, err := fleet.OpenLease(totals, fleet.LeaseConfig{Worker: o.worker, Key: fleet.DefaultLeaseKey + "." + d.cfg.Stream + "." + d.cfg.Consumer})
	if err != nil {
		return err
	}
	d.parts.lease.set(lease)
	leaseDone := make(chan struct{})
	go func() {
		defer close(leaseDone)
		lease.Run(runCtx, func(err error) { o.log.Warn("holder lease", zap.Error(err)) })
	}()
	quotaDone, err := o.startQuota(ctx, runCtx, d, totals)
	if err != nil {
		cancel()
		<-leaseDone
		if quotaDone != nil {
			<-quotaDone
		}
		close(o.fleetDone)
		return err
	}
	go func() {
		defer close(o.fleetDone)
		defer func() { <-leaseDone; <-quotaDone }()
		err := totals.Run(runCtx, read, func(err error) { o.log.Warn("update fleet totals", zap.Error(err)) })
		if err != nil {
			o.log.Warn("final update of fleet totals", zap.Error(err))
		}
	}()
	return nil
}

// startQuota opens the fleet's quota of the provider's limits, runs it
// until runCtx ends (then its heartbeat is deleted: the others take this
// worker's share at once) and hands it to the limiter once it has counted
// the fleet, so the first call already keeps to this worker's share. The
// returned channel, nil when nothing was started, is closed when it has
// stopped.
func (o *ops) startQuota(ctx, runCtx context.Context, d opsDeps, totals *fleet.Totals) (<-chan struct{}, error) {
	scope := d.cfg.quotaScope()
	q, err := fleet.OpenQuota(ctx, totals, fleet.QuotaConfig{Scope: scope, Worker: o.worker, Heartbeat: d.cfg.QuotaHeartbeat})
	if err != nil {
		return nil, fmt.Errorf("set up the fleet's quota (QUOTA_SCOPE=%s): %w", scope, err)
	}
	done := make(chan struct{})
	var last atomic.Pointer[error]
	go func() {
		defer close(done)
		q.Run(runCtx, func(err error) {
			last.Store(&err)
			o.log.Warn("fleet quota", zap.Error(err))
		})
	}()
	select {
	case <-q.Ready():
	case <-ctx.Done():
		err := ctx.Err()
		if l := last.Load(); l != nil {
			err = fmt.Errorf("%w (last: %w)", err, *l)
		}
		return done, fmt.Errorf("set up the fleet's quota (QUOTA_SCOPE=%s; the worker needs to watch %s in STATS_BUCKET): %w", scope, "quota."+scope+".>", err)
	}
	d.parts.quota.fleet.set(q)
	o.log.Info("fleet quota", zap.String("scope", scope), zap.Int("workers", q.Workers()),
		zap.Int("provider_rpm", d.cfg.ProviderRPM), zap.Int("provider_tpm", d.cfg.ProviderTPM))
	return done, nil
}

// serveFlush answers flush requests on the control subject.
func (o *ops) serveFlush(d opsDeps) error {
	responder, err := fleet.ServeFlush(d.broker.nc, "", o.worker, d.parts.engine, d.cfg.ShutdownTimeout)
	if err != nil {
		return fmt.Errorf("serve %s: %w", wire.ControlFlushSubject, err)
	}
	o.responder = responder
	return nil
}

// startAdmin serves the probes on ADMIN_ADDR before the worker connects to
// NATS, so /healthz answers and /readyz says what the worker waits for;
// attachAdmin adds the rest once the engine exists. It returns nil when
// ADMIN_ADDR is empty, or when the default address is taken: a set address
// that cannot be bound stops the worker (adminAddrSet), the default only
// logs a warning (a second worker on the same machine still runs).
func startAdmin(ctx context.Context, cfg config, adminAddrSet bool, log *zap.Logger) (*admin.Server, error) {
	if cfg.AdminAddr == "" {
		return nil, nil
	}
	srv, err := admin.New(admin.Config{Addr: cfg.AdminAddr, Token: cfg.AdminToken, Log: log.Named("admin")})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		if adminAddrSet {
			return nil, err
		}
		log.Warn("admin API not started: the default address is taken (set ADMIN_ADDR to another address, or to empty to turn it off)", zap.Error(err))
		return nil, nil
	}
	log.Info("admin API listening", zap.String("addr", srv.Addr()))
	return srv, nil
}

// shutdownAdmin stops srv, if it runs; a second call does nothing.
func shutdownAdmin(srv *admin.Server, log *zap.Logger) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shut down admin API", zap.Error(err))
	}
}

// attachAdmin hands the admin server, when it runs, the engine and the
// parts beside it: from now on it serves batch-stats, the flush, the
// readiness checks and the metrics.
func (o *ops) attachAdmin(d opsDeps) error {
	if d.admin == nil {
		return nil
	}
	if err := d.admin.Attach(o.adminConfig(d)); err != nil {
		return err
	}
	o.admin = d.admin
	return nil
}

// adminConfig is what the admin API serves: the engine, readiness of NATS,
// the consumers and the provider, the metrics, cost, settings and, when
// on, the fleet's totals and the fleet flush.
func (o *ops) adminConfig(d opsDeps) admin.Config {
	p := d.parts
	consumers := make([]admin.Consumer, len(p.lanes))
	for i, l := range p.lanes {
		consumers[i] = l.Consumer()
	}
	nc := d.broker.nc
	cfg := admin.Config{
		Worker:   o.worker,
		Engine:   p.engine,
		Ready:    admin.Readiness{NATS: nc, Consumers: consumers, Provider: p.provider, ProviderHealth: p.engine.ProviderHealth},
		Gatherer: p.registry,
		Cost:     p.cost,
		Settings: d.cfg.settings(),
		Secrets:  secretSettings(),
		FlushFleet: func(ctx context.Context) ([]fleet.FlushReply, error) {
			return fleet.FlushAll(ctx, nc, "", 0)
		},
		Log: d.log.Named("admin"),
	}
	if o.fleet != nil {
		cfg.Fleet = o.fleet
	}
	if p.quota != nil {
		cfg.Quota = p.quota.stats
	}
	return cfg
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
	shutdownAdmin(o.admin, o.log)
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
