package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
)

// Lease elects one worker of a fleet as the holder: the one whose batch lane
// gathers partial groups. The others fetch new requests only once a backlog
// builds up (batch.HoldLease), so at a low rate every group fills in one
// worker's window and N workers do not send N partial calls per group.
//
// The lease is one key of a key-value bucket, written with compare-and-set:
// the holder renews it every TTL/3; another worker takes it over when it has
// not been renewed for TTL (its holder died), and a holder that stops gives
// it up at once. Any worker may hold it; while it changes hands every worker
// may hold requests for a moment, which costs a few partial calls, never a
// request.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	worker string
	ttl    time.Duration

	held     atomic.Bool
	revision uint64 // of our last write; used by Run's goroutine only
}

var _ batch.HoldLease = (*Lease)(nil)

// LeaseConfig configures a Lease.
type LeaseConfig struct {
	// Key is the key holding the lease. Default DefaultLeaseKey.
	Key string
	// Worker identifies this worker in the lease; required.
	Worker string
	// TTL is how long a lease lasts without renewal. Default
	// DefaultLeaseTTL.
	TTL time.Duration
}

// Defaults of LeaseConfig's fields.
const (
	DefaultLeaseKey = "holder"
	DefaultLeaseTTL = 6 * time.Second
)

// OpenLease returns a Lease kept in the fleet's bucket (Totals' bucket). It
// holds nothing until Run has taken it.
func OpenLease(t *Totals, cfg LeaseConfig) (*Lease, error) {
	if cfg.Worker == "" {
		return nil, errors.New("fleet: a lease needs the worker's id")
	}
	if cfg.Key == "" {
		cfg.Key = DefaultLeaseKey
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLeaseTTL
	}
	return &Lease{kv: t.kv, key: cfg.Key, worker: cfg.Worker, ttl: cfg.TTL}, nil
}

// Held reports whether this worker holds the lease now.
func (l *Lease) Held() bool { return l.held.Load() }

// Run takes and renews the lease until ctx ends, then gives it up if held.
// Errors of the bucket are passed to onError (may be nil) and retried.
func (l *Lease) Run(ctx context.Context, onError func(error)) {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		if err := l.step(ctx); err != nil && ctx.Err() == nil && onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			l.release()
			return
		case <-t.C:
		}
	}
}

// step renews the lease if held, or takes it if it is free or stale.
func (l *Lease) step(ctx context.Context) error {
	if l.held.Load() {
		rev, err := l.kv.Update(ctx, l.key, []byte(l.worker), l.revision)
		if err != nil {
			l.held.Store(false)
			return fmt.Errorf("fleet: renew the holder lease: %w", err)
		}
		l.revision = rev
		return nil
	}
	e, err := l.kv.Get(ctx, l.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || (err == nil && e.Operation() != jetstream.KeyValuePut):
		rev, err := l.kv.Create(ctx, l.key, []byte(l.worker))
		if err != nil {
			return nil // another worker was quicker
		}
		l.revision = rev
		l.held.Store(true)
	case err != nil:
		return fmt.Errorf("fleet: read the holder lease: %w", err)
	case time.Since(e.Created()) >= l.ttl:
		rev, err := l.kv.Update(ctx, l.key, []byte(l.worker), e.Revision())
		if err != nil {
			return nil // another worker took it over first
		}
		l.revision = rev
		l.held.Store(true)
	}
	return nil
}

// release gives the lease up so another worker takes it at once.
func (l *Lease) release() {
	if !l.held.Swap(false) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.revision))
}
