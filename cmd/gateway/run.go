package main

import (
	"context"
	"fmt"
	neturl "net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aibatch/aibatch/internal/buildinfo"
	"github.com/aibatch/aibatch/internal/gateway"
	"github.com/aibatch/aibatch/internal/metrics"
)

// drainTimeout bounds the final drain of the NATS connection.
const drainTimeout = 10 * time.Second

// run serves the gateway until ctx ends: it listens first (so /healthz
// answers and /readyz says what it waits for), then connects to NATS and
// waits for the workers' streams for as long as it takes. ready, when not
// nil, gets the address it listens on.
func run(ctx context.Context, lookup envconfig.Lookuper, ready func(addr string)) error {
	c, gc, err := loadConfig(ctx, lookup)
	if err != nil {
		return err
	}
	log, err := newLogger(c.LogLevel, c.LogFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	gc.Log = log.Named("gateway")
	reg := prometheus.NewRegistry()
	bi := buildinfo.Get()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.BuildInfo(bi.Version, bi.Commit, bi.GoVersion))
	srv, err := gateway.New(gc, reg, reg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	if ready != nil {
		ready(srv.Addr())
	}
	nc, err := connect(c, log)
	if err != nil {
		_ = srv.Shutdown(context.WithoutCancel(ctx))
		return err
	}
	defer drain(nc)
	if err := attach(ctx, srv, nc, redactURL(c.NATSURL), log); err == nil {
		log.Info("gateway started", zap.String("addr", srv.Addr()), zap.String("version", bi.Version),
			zap.String("reply_subject", srv.ReplySubject()), zap.Int("keys", gc.Keys.Len()),
			zap.Duration("timeout", gc.Timeout), zap.Strings("models", gc.Models))
		<-ctx.Done()
	}
	log.Info("gateway stopping", zap.Duration("shutdown_timeout", gc.ShutdownTimeout))
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gc.ShutdownTimeout+drainTimeout)
	defer cancel()
	if err := srv.Shutdown(stopCtx); err != nil {
		log.Warn("stop the HTTP server", zap.Error(err))
	}
	log.Info("gateway stopped")
	return nil
}

// connect opens the NATS connection, which keeps trying a server that is
// not up yet and reconnects for ever.
func connect(c config, log *zap.Logger) (*nats.Conn, error) {
	opts, err := c.auth().Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.Name("aibatch-gateway"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
	)
	nc, err := nats.Connect(c.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(c.NATSURL), err)
	}
	return nc, nil
}

// attach connects the gateway to the workers' streams, trying again until
// they exist or ctx ends; /readyz says what it waits for meanwhile.
func attach(ctx context.Context, srv *gateway.Server, nc *nats.Conn, url string, log *zap.Logger) error {
	retry, logEvery := 250*time.Millisecond, 10*time.Second
	var nextLog time.Time
	for {
		var err error
		if !nc.IsConnected() {
			err = fmt.Errorf("waiting for NATS at %s", url)
		} else {
			attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = srv.Connect(attempt, nc)
			cancel()
			if err == nil {
				return nil
			}
			err = fmt.Errorf("waiting for the workers' streams: %w", err)
		}
		srv.SetStarting(err.Error())
		if now := time.Now(); !now.Before(nextLog) {
			log.Info("gateway not serving yet", zap.Error(err))
			nextLog = now.Add(logEvery)
			logEvery = min(2*logEvery, 5*time.Minute)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
		retry = min(2*retry, 5*time.Second)
	}
}

// drain flushes what the connection holds and closes it.
func drain(nc *nats.Conn) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(drainTimeout):
		nc.Close()
	}
}

// redactURL returns NATS_URL (one URL or several) as scheme://host:port
// only: credentials in a URL are never shown.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := neturl.Parse(strings.TrimSpace(p))
		if err != nil || u.Scheme == "" || u.Host == "" {
			parts[i] = "(a server address that is not a URL)"
			continue
		}
		parts[i] = u.Scheme + "://" + u.Host
	}
	return strings.Join(parts, ",")
}

// newLogger builds the zap logger at LOG_LEVEL in LOG_FORMAT.
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
	zc.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder
	return zc.Build()
}
