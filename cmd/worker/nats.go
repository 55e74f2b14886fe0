package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/jetstream"
)

// setupTimeout bounds creating the streams and consumers at start-up, once
// connected; connectWhenUp waits for NATS itself for as long as it takes.
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
// NATS (with NATS_* credentials for an external server), checks that the
// server is recent enough and opens JetStream. It waits for a server that
// is not up yet until ctx ends, telling report (the admin server's /readyz)
// what it waits for. On an error it closes what it opened.
func connect(ctx context.Context, cfg config, log *zap.Logger, report func(check, reason string)) (*broker, error) {
	b := &broker{log: log, closed: make(chan struct{})}
	url, err := b.serverURL(cfg, report)
	if err != nil {
		return nil, err
	}
	opts, err := b.options(cfg)
	if err != nil {
		b.close()
		return nil, err
	}
	report(admin.CheckNATS, "waiting for NATS at "+redactURLs(url))
	if b.nc, err = connectWhenUp(ctx, log, url, defaultConnectWait, opts...); err != nil {
		b.close()
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	// Before anything is created: an old server would take the streams
	// and then refuse the consumers.
	if err := checkServerVersion(b.nc.ConnectedServerVersion()); err != nil {
		b.close()
		return nil, err
	}
	if b.js, err = natsjs.New(b.nc); err != nil {
		b.close()
		return nil, fmt.Errorf("open JetStream: %w", err)
	}
	return b, nil
}

// minServerVersion is the oldest nats-server the worker works with: each
// lane's consumer filters on several subjects (REQUEST_SUBJECTS,
// URGENT_SUBJECTS), which 2.10 introduced.
const minServerVersion = "2.10"

// checkServerVersion refuses a server older than minServerVersion, from
// the version its INFO reported. A version it cannot read passes: the
// server's own errors will say more than a guess.
func checkServerVersion(version string) error {
	major, minor, ok := majorMinor(version)
	wantMajor, wantMinor, _ := majorMinor(minServerVersion)
	if !ok || major > wantMajor || (major == wantMajor && minor >= wantMinor) {
		return nil
	}
	return fmt.Errorf("nats-server %s is too old: aibatch needs %s or newer", version, minServerVersion)
}

// majorMinor reads "2.9.10", "v2.10.0-beta.1" or "2.11".
func majorMinor(version string) (major, minor int, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(strings.TrimSpace(version), "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	digits := func(s string) string {
		if i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			return s[:i]
		}
		return s
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(digits(parts[1]))
	return major, minor, err1 == nil && err2 == nil
}

// redactURLs returns NATS_URL (one URL or several, comma-separated) as
// scheme://host:port only, for logs and /readyz: user names, passwords
// and tokens in a URL are never shown.
func redactURLs(urls string) string {
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

// serverURL returns NATS_URL, or starts the embedded server and returns
// its URL when NATS_URL is empty.
func (b *broker) serverURL(cfg config, report func(check, reason string)) (string, error) {
	if cfg.NATSURL != "" {
		return cfg.NATSURL, nil
	}
	report(admin.CheckNATS, "starting the embedded NATS server on "+cfg.NATSListen)
	ns, err := startEmbedded(cfg)
	if err != nil {
		return "", err
	}
	b.embedded = ns
	b.log.Info("embedded NATS server started", zap.String("url", ns.ClientURL()), zap.String("store_dir", cfg.StoreDir))
	return ns.ClientURL(), nil
}

// startEmbedded runs the embedded server on NATS_LISTEN with its store in
// STORE_DIR. A taken address fails at once, naming it, rather than after
// the server's ready timeout.
func startEmbedded(cfg config) (*server.Server, error) {
	host, portText, _ := net.SplitHostPort(cfg.NATSListen)
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("NATS_LISTEN=%q: port is not a number", cfg.NATSListen)
	}
	if port != 0 && port != -1 {
		ln, err := net.Listen("tcp", cfg.NATSListen)
		if err != nil {
			return nil, fmt.Errorf("NATS_LISTEN=%s: cannot listen there for the embedded NATS server (another server runs on it? set NATS_LISTEN to another port, or NATS_URL to use that server): %w", cfg.NATSListen, err)
		}
		_ = ln.Close()
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

// connectWait is how connectWhenUp waits for a server that is not up: it
// tries again after Retry, doubling up to RetryMax, and logs after LogFirst
// (and at the first failure), doubling up to LogMax, so a long outage at
// start-up gives a few lines, not one a second.
type connectWait struct {
	Retry, RetryMax, LogFirst, LogMax time.Duration
}

var defaultConnectWait = connectWait{
	Retry: 250 * time.Millisecond, RetryMax: 5 * time.Second,
	LogFirst: 10 * time.Second, LogMax: 5 * time.Minute,
}

// connectWhenUp connects to NATS, waiting until ctx ends for a server that
// is not up yet, as when the worker and NATS start together or NATS is down
// for a while: the admin server meanwhile answers /healthz and says on
// /readyz what the worker waits for, so an orchestrator keeps the worker
// instead of restarting it. Other errors, such as refused credentials,
// return at once. The log lines name the URL without credentials.
func connectWhenUp(ctx context.Context, log *zap.Logger, url string, w connectWait, opts ...nats.Option) (*nats.Conn, error) {
	start := time.Now()
	retry, logEvery := w.Retry, w.LogFirst
	var nextLog time.Time // zero: log the first failure
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil || !errors.Is(err, nats.ErrNoServers) {
			return nc, err
		}
		if now := time.Now(); !now.Before(nextLog) {
			log.Info("waiting for NATS", zap.String("url", redactURLs(url)),
				zap.Duration("waited", now.Sub(start).Round(time.Millisecond)), zap.Error(err))
			nextLog = now.Add(logEvery)
			logEvery = min(2*logEvery, w.LogMax)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(retry):
		}
		retry = min(2*retry, w.RetryMax)
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
