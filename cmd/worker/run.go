package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/openai"
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
	closed := make(chan struct{})
	nc, err := nats.Connect(url,
		nats.Name("aibatch-worker"),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
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
	)
	if err != nil {
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
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	batchLane, urgentLane, pub, err := jetstream.Ensure(setupCtx, js, cfg.topology())
	if err != nil {
		return fmt.Errorf("set up streams: %w", err)
	}
	p, err := newProvider(cfg)
	if err != nil {
		return err
	}
	engine, err := batch.New(cfg.engine(), batchLane, pub, p,
		batch.WithUrgentQueue(urgentLane),
		batch.WithLogger(log.Named("batch")))
	if err != nil {
		return err
	}
	ec := engine.Config()
	log.Info("worker started",
		zap.String("provider", p.Name()), zap.String("model", cfg.Model),
		zap.Bool("batched", !ec.Immediate), zap.Int("max_batch_size", ec.MaxBatchSize),
		zap.Duration("batch_interval", ec.Interval), zap.Duration("max_wait", ec.MaxWait),
		zap.String("stream", cfg.Stream), zap.String("consumer", cfg.Consumer))
	err = engine.Run(ctx)
	log.Info("worker stopped")
	return err
}

func startEmbedded(cfg config) (*server.Server, error) {
	host, portText, _ := net.SplitHostPort(cfg.NATSListen)
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("NATS_LISTEN=%q: port is not a number", cfg.NATSListen)
	}
	return jetstream.RunServer(jetstream.ServerConfig{Host: host, Port: port, StoreDir: cfg.StoreDir})
}

func newProvider(cfg config) (provider.Provider, error) {
	switch cfg.Provider {
	case "openai":
		key := cfg.OpenAIAPIKey
		if key == "" {
			// An OpenAI-compatible server that needs no key still gets a
			// bearer header.
			key = "unused"
		}
		p, err := openai.New(openai.Config{APIKey: key, BaseURL: cfg.OpenAIBaseURL})
		if err != nil {
			return nil, fmt.Errorf("set up provider openai: %w", err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("PROVIDER=%q: want openai", cfg.Provider)
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
