package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/aibatch/aibatch/jetstream"
)

// setupTimeout bounds waiting for NATS and creating the streams at start-up.
const setupTimeout = 60 * time.Second

// broker is the worker's NATS connection and, when NATS_URL is empty, the
// embedded server it talks to.
type broker struct {
	log      *zap.Logger
	embedded *server.Server // nil with an external server
	nc       *nats.Conn
	js       natsjs.JetStream
	// closed is closed when the connection has closed for good.
	closed    chan struct{}
	closeOnce sync.Once
}

// connect starts the embedded server when NATS_URL is empty, connects to
// NATS (with NATS_* credentials for an external server) and opens
// JetStream. On an error it closes what it opened.
func connect(ctx context.Context, cfg config, log *zap.Logger) (*broker, error) {
	b := &broker{log: log, closed: make(chan struct{})}
	url, err := b.serverURL(cfg)
	if err != nil {
		return nil, err
	}
	opts, err := b.options(cfg)
	if err != nil {
		b.close()
		return nil, err
	}
	if b.nc, err = connectWhenUp(ctx, log, url, opts...); err != nil {
		b.close()
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	if b.js, err = natsjs.New(b.nc); err != nil {
		b.close()
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	return b, nil
}

// serverURL returns NATS_URL, or starts the embedded server and returns
// its URL when NATS_URL is empty.
func (b *broker) serverURL(cfg config) (string, error) {
	if cfg.NATSURL != "" {
		return cfg.NATSURL, nil
	}
	ns, err := startEmbedded(cfg)
	if err != nil {
		return "", err
	}
	b.embedded = ns
	b.log.Info("embedded NATS server started", zap.String("url", ns.ClientURL()), zap.String("store_dir", cfg.StoreDir))
	return ns.ClientURL(), nil
}

// startEmbedded runs the embedded server on NATS_LISTEN with its store in
// STORE_DIR.
func startEmbedded(cfg config) (*server.Server, error) {
	host, portText, _ := net.SplitHostPort(cfg.NATSListen)
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("NATS_LISTEN=%q: port is not a number", cfg.NATSListen)
	}
	return jetstream.RunServer(jetstream.ServerConfig{Host: host, Port: port, StoreDir: cfg.StoreDir})
}

// options are the connection's options: reconnect for ever, log
// disconnects and reconnects, note when the connection closes, and the
// credentials of an external server (the embedded one needs none).
func (b *broker) options(cfg config) ([]nats.Option, error) {
	var opts []nats.Option
	if b.embedded == nil {
		auth, err := cfg.auth().Options()
		if err != nil {
			return nil, err
		}
		opts = auth
	}
	return append(opts,
		nats.Name("aibatch-worker"),
		nats.ClosedHandler(func(*nats.Conn) { b.closeOnce.Do(func() { close(b.closed) }) }),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			b.log.Info("NATS reconnected", zap.String("url", c.ConnectedUrlRedacted()))
		}),
	), nil
}

// close drains the connection, which flushes the last acks, and then shuts
// the embedded server down.
func (b *broker) close() {
	if b.nc != nil {
		if err := b.nc.Drain(); err == nil {
			select {
			case <-b.closed:
			case <-time.After(10 * time.Second):
			}
		}
	}
	if b.embedded != nil {
		b.embedded.Shutdown()
		b.embedded.WaitForShutdown()
	}
}

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

// isTimeout reports whether err says the server did not answer in time.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, natsjs.ErrNoStreamResponse)
}
