// Package admin serves a worker's operator HTTP API: batch statistics for the
// worker and the fleet, a forced flush, liveness and readiness probes, and
// Prometheus metrics.
//
// Routes:
//
//	GET  /admin/batch-stats           this worker's and the fleet's figures, and the effective settings
//	POST /admin/batch-process         flush this worker now; ?scope=all flushes every worker
//	GET  /healthz                     200 while the process serves HTTP
//	GET  /readyz                      200 when NATS, the streams, the consumers and the provider are usable; 503 naming the failing check otherwise
//	GET  /metrics                     Prometheus exposition of the given registry
//
// A worker starts its server before it connects to NATS, so the probes
// answer while it waits: New without an Engine gives a server that answers
// /healthz, and /readyz, /admin/* and /metrics with 503 and the reason
// SetStarting gave ("waiting for NATS at nats://host:4222"), until Attach
// hands it the engine.
//
// When a token is set, /admin/* requires "Authorization: Bearer <token>";
// the probes and /metrics stay open. A server that listens beyond loopback
// without a token is refused.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/cost"
	"github.com/aibatch/aibatch/internal/fleet"
)

// DefaultAddr is where the server listens when Config.Addr is empty.
const DefaultAddr = "127.0.0.1:8080"

// Engine is what the server asks of the batching engine: *batch.Engine.
type Engine interface {
	// Stats returns a snapshot of the engine's counters.
	Stats() batch.Stats
	// Flush sends every request waiting in the batch lane now.
	Flush(ctx context.Context) (batch.FlushReport, error)
}

// FleetTotals reads the fleet's counters: *fleet.Totals.
type FleetTotals interface {
	Read(ctx context.Context) (fleet.Counters, error)
}

// FleetFlusher asks every worker to flush and returns their replies, as
// fleet.FlushAll does.
type FleetFlusher func(ctx context.Context) ([]fleet.FlushReply, error)

// Connection is the NATS connection as readiness sees it: *nats.Conn.
type Connection interface {
	IsConnected() bool
}

// Consumer is a durable consumer as readiness sees it: jetstream.Consumer.
// Info asks the server, so it proves the stream and the consumer exist.
type Consumer interface {
	Info(ctx context.Context) (*jetstream.ConsumerInfo, error)
}

// Readiness is what /readyz checks, in order.
type Readiness struct {
	// NATS must be connected.
	NATS Connection
	// Consumers must answer Info: their stream and they exist.
	Consumers []Consumer
	// Provider names the configured AI provider; empty fails the check.
	Provider string
	// ProviderHealth, when set, says why the provider cannot serve anyone
	// now (the engine's circuit breaker is open); a non-nil error fails the
	// provider check with that reason. /healthz is not affected, so
	// Kubernetes takes the pod out of service without restarting it.
	ProviderHealth func() error
	// Timeout bounds each check that asks the server. Default 2s.
	Timeout time.Duration
}

// Config is what the server serves and how it is protected.
type Config struct {
	// Addr is the host:port to listen on (ADMIN_ADDR). Default DefaultAddr.
	// A port of 0 picks a free one; Server.Addr tells which.
	Addr string
	// Token, when not empty, is required on /admin/* as a bearer token
	// (ADMIN_TOKEN). It is required when Addr is not a loopback address.
	Token string
	// Worker identifies this worker in batch-stats.
	Worker string
	// Engine is required by Attach. New accepts a Config without it: the
	// server then answers as a worker that is starting (see SetStarting).
	Engine Engine
	// Fleet, when set, adds the fleet's totals to batch-stats.
	Fleet FleetTotals
	// FlushFleet, when set, serves POST /admin/batch-process?scope=all.
	FlushFleet FleetFlusher
	// Ready is what /readyz checks.
	Ready Readiness
	// Cost, when set, adds the estimated spend and saving to batch-stats.
	Cost CostTotals
	// Quota, when set, adds what the worker paces its provider calls by to
	// batch-stats.
	Quota func() QuotaStats
	// Gatherer is served on /metrics; when nil, /metrics answers 404.
	Gatherer prometheus.Gatherer
	// Settings are the effective settings shown in batch-stats, by name.
	// The values of those named in Secrets are redacted (see Redact)
	// before they are served.
	Settings map[string]string
	// Secrets names the settings that hold secrets: API keys, tokens and
	// passwords. Paths of credential files are not secrets; their contents
	// are never among the settings.
	Secrets []string
	// FlushTimeout bounds a forced flush. Default 30s.
	FlushTimeout time.Duration
	// Log receives request errors and forced flushes; default none.
	Log *zap.Logger
}

// CostTotals is the cost accounting batch-stats reports.
type CostTotals interface {
	Totals() cost.Totals
}

// ErrExposed is wrapped by the error New returns for a server that would
// listen beyond this machine without a token.
var ErrExposed = errors.New("admin: API reachable from other machines without a token")

// CheckExposure returns an error wrapping ErrExposed when addr is not a
// loopback address and token is empty, and an error when addr is not
// host:port. Its messages name ADMIN_ADDR and ADMIN_TOKEN.
func CheckExposure(addr, token string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("ADMIN_ADDR=%q: want host:port such as 127.0.0.1:8080: %w", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("ADMIN_ADDR=%q: bad port: %w", addr, err)
	}
	if token != "" || isLoopback(host) {
		return nil
	}
	return exposedError{addr: addr}
}

// exposedError is ErrExposed with the address, in the words of the
// settings.
type exposedError struct{ addr string }

func (e exposedError) Error() string {
	return fmt.Sprintf("ADMIN_ADDR=%q listens beyond this machine and ADMIN_TOKEN is empty: set ADMIN_TOKEN, or bind ADMIN_ADDR to a loopback address such as 127.0.0.1:8080", e.addr)
}

func (e exposedError) Is(target error) bool { return target == ErrExposed }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, _, _ := strings.Cut(host, "%") // fe80::1%lo0: drop the zone
	parsed := net.ParseIP(ip)
	return parsed != nil && parsed.IsLoopback()
}

// Server is the admin HTTP server. Create it with New, start it with Start
// and stop it with Shutdown.
type Server struct {
	// cfg holds what New was given: the address, token and logger stay;
	// what the routes serve is in view.
	cfg     Config
	handler http.Handler
	log     *zap.Logger

	// view is what the routes serve now; viewMu orders its updates.
	view   atomic.Pointer[view]
	viewMu sync.Mutex

	mu      sync.Mutex
	srv     *http.Server
	ln      net.Listener
	done    chan struct{}
	stopped bool
}

// view is what the routes serve: a running worker's parts, or, before
// Attach, why the worker is not serving yet.
type view struct {
	cfg      Config
	settings map[string]string
	// metrics serves /metrics; nil answers 404.
	metrics http.Handler
	// startingCheck and starting say what a worker without an engine waits
	// for: the /readyz check that fails and why.
	startingCheck, starting string
}

// attached reports whether the view has the worker's engine.
func (v *view) attached() bool { return v.cfg.Engine != nil }

// DefaultStarting is what a server without an engine says until
// SetStarting says more.
const DefaultStarting = "worker starting"

// New checks cfg and returns a server that is not listening yet. It refuses
// a non-loopback Addr without a Token (the error wraps ErrExposed). Without
// an Engine the server answers as a worker that is starting until Attach.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if err := CheckExposure(cfg.Addr, cfg.Token); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	s := &Server{cfg: cfg, log: cfg.Log}
	s.view.Store(newView(cfg, CheckNATS, DefaultStarting))
	s.handler = s.routes()
	return s, nil
}

// newView is the view of cfg, with the defaults of its timeouts.
func newView(cfg Config, startingCheck, starting string) *view {
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 30 * time.Second
	}
	if cfg.Ready.Timeout <= 0 {
		cfg.Ready.Timeout = 2 * time.Second
	}
	v := &view{cfg: cfg, settings: Redact(cfg.Settings, cfg.Secrets), startingCheck: startingCheck, starting: starting}
	if cfg.Gatherer != nil {
		v.metrics = promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})
	}
	return v
}

// SetStarting says what a server without an engine answers on /readyz:
// check is the check that fails (CheckNATS, CheckStream) and reason why,
// such as "waiting for NATS at nats://nats:4222". The reason is served to
// anyone who can reach the probes: it must hold no secret. After Attach it
// does nothing.
func (s *Server) SetStarting(check, reason string) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	cur := s.view.Load()
	if cur.attached() {
		return
	}
	next := *cur
	next.startingCheck, next.starting = check, reason
	s.view.Store(&next)
}

// Attach gives a server created without an engine what a running worker
// serves: cfg's Engine (required), Worker, Fleet, FlushFleet, Ready, Cost,
// Gatherer, Settings and FlushTimeout. The server keeps the Addr, Token and
// Log it was created with; cfg's are ignored. It returns an error when cfg
// has no Engine or the server has one already.
func (s *Server) Attach(cfg Config) error {
	if cfg.Engine == nil {
		return errors.New("admin: Attach needs the engine")
	}
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.view.Load().attached() {
		return errors.New("admin: Attach called twice; a server serves one engine")
	}
	cfg.Addr, cfg.Token, cfg.Log = s.cfg.Addr, s.cfg.Token, s.cfg.Log
	s.view.Store(newView(cfg, "", ""))
	return nil
}

// Handler returns the server's routes, for tests and for mounting them
// elsewhere; authentication is part of it.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	admin := http.NewServeMux()
	admin.HandleFunc("GET /admin/batch-stats", s.batchStats)
	admin.HandleFunc("POST /admin/batch-process", s.batchProcess)

	mux := http.NewServeMux()
	mux.Handle("/admin/", s.requireToken(s.whenAttached(admin)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.whenAttached(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := s.view.Load().metrics
		if m == nil {
			http.NotFound(w, r)
			return
		}
		m.ServeHTTP(w, r)
	})))
	return mux
}

// whenAttached answers 503 with the start-up reason until the server has
// an engine, and passes requests to next after that.
func (s *Server) whenAttached(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := s.view.Load()
		if !v.attached() {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "worker starting: " + v.starting})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Start listens on Addr and serves in the background until Shutdown. ctx
// bounds the listen only. It returns an error when the address cannot be
// bound or the server was started already.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil || s.stopped {
		return errors.New("admin: Start called twice; a server starts once")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen on %s (ADMIN_ADDR): %w", s.cfg.Addr, err)
	}
	errLog, _ := zap.NewStdLogAt(s.log, zap.WarnLevel)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          errLog,
	}
	s.ln = ln
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", zap.Error(err))
		}
	}(s.srv, s.done)
	return nil
}

// Addr returns the address the server listens on, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting connections and waits for requests in progress
// to finish until ctx ends; then it closes the connections left. It returns
// nil when the server was never started or was shut down already; a
// server that was shut down cannot start again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done, already := s.srv, s.done, s.stopped
	s.stopped = true
	s.mu.Unlock()
	if srv == nil || already {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
		err = fmt.Errorf("admin: shut down: %w", err)
	}
	<-done
	return err
}
