package jetstream

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// Host and Port are where the server listens for other processes.
	// Port -1 picks a free port. Defaults DefaultServerHost (127.0.0.1) and
	// DefaultServerPort (4222).
	Host string
	Port int
	// StoreDir holds JetStream's files; required. Requests survive a restart
	// on the same directory.
	StoreDir string
	// Name is the server's name; default DefaultServerName ("aibatch").
	Name string
	// ReadyTimeout bounds the wait for the server to accept connections.
	// Default DefaultServerReadyTimeout (10s).
	ReadyTimeout time.Duration
	// Options, when set, is used as the base of the server's options, for
	// settings this struct does not name (TLS, authorization, clustering).
	Options *server.Options
}

// Defaults of ServerConfig's fields.
const (
	DefaultServerHost         = "127.0.0.1"
	DefaultServerPort         = 4222
	DefaultServerName         = "aibatch"
	DefaultServerReadyTimeout = 10 * time.Second
)

// RunServer starts an embedded NATS server with JetStream and file storage,
// and waits until it accepts connections. Stop it with Shutdown and
// WaitForShutdown.
func RunServer(cfg ServerConfig) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("jetstream: embedded server needs a store directory")
	}
	opts := &server.Options{}
	if cfg.Options != nil {
		opts = cfg.Options.Clone()
	}
	opts.Host = cfg.Host
	if opts.Host == "" {
		opts.Host = DefaultServerHost
	}
	opts.Port = cfg.Port
	if opts.Port == 0 {
		opts.Port = DefaultServerPort
	}
	opts.ServerName = cfg.Name
	if opts.ServerName == "" {
		opts.ServerName = DefaultServerName
	}
	opts.JetStream = true
	opts.StoreDir = cfg.StoreDir
	opts.NoSigs = true
	if cfg.Options == nil {
		opts.NoLog = true
	}
	ready := cfg.ReadyTimeout
	if ready == 0 {
		ready = DefaultServerReadyTimeout
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("jetstream: configure embedded server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(ready) {
		ns.Shutdown()
		return nil, fmt.Errorf("jetstream: embedded server on %s:%d not ready after %s (is the port in use?)", opts.Host, opts.Port, ready)
	}
	return ns, nil
}
