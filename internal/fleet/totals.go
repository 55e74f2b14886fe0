package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/jsutil"
)

// Counters are counts of what engines did: one worker's share, or the
// fleet's totals. The JSON names match batch.Stats.
type Counters struct {
	Requests     int64 `json:"requests"`
	ResultsOK    int64 `json:"results_ok"`
	ResultsError int64 `json:"results_error"`
	DeadLetters  int64 `json:"dead_letters"`
	APICalls     int64 `json:"api_calls"`
	Batches      int64 `json:"batches"`
	Retries      int64 `json:"retries"`
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// CountersOf returns the counters of an engine's stats.
func CountersOf(s batch.Stats) Counters {
	return Counters{
		Requests:     s.Requests,
		ResultsOK:    s.ResultsOK,
		ResultsError: s.ResultsError,
		DeadLetters:  s.DeadLetters,
		APICalls:     s.APICalls,
		Batches:      s.Batches,
		Retries:      s.Retries,
		InputTokens:  s.Usage.InputTokens,
		OutputTokens: s.Usage.OutputTokens,
	}
}

// Add returns c plus o.
func (c Counters) Add(o Counters) Counters {
	return Counters{
		Requests:     c.Requests + o.Requests,
		ResultsOK:    c.ResultsOK + o.ResultsOK,
		ResultsError: c.ResultsError + o.ResultsError,
		DeadLetters:  c.DeadLetters + o.DeadLetters,
		APICalls:     c.APICalls + o.APICalls,
		Batches:      c.Batches + o.Batches,
		Retries:      c.Retries + o.Retries,
		InputTokens:  c.InputTokens + o.InputTokens,
		OutputTokens: c.OutputTokens + o.OutputTokens,
	}
}

// Sub returns c minus o.
func (c Counters) Sub(o Counters) Counters {
	return c.Add(Counters{
		Requests: -o.Requests, ResultsOK: -o.ResultsOK, ResultsError: -o.ResultsError,
		DeadLetters: -o.DeadLetters, APICalls: -o.APICalls, Batches: -o.Batches, Retries: -o.Retries,
		InputTokens: -o.InputTokens, OutputTokens: -o.OutputTokens,
	})
}

// IsZero reports whether every counter is 0.
func (c Counters) IsZero() bool { return c == Counters{} }

// Config names the key-value bucket that holds the fleet's totals.
type Config struct {
	// Bucket is the key-value bucket. Default DefaultBucket
	// ("AI_STATS").
	Bucket string
	// Key is the key holding the totals. Default DefaultKey ("totals").
	Key string
	// Interval is how often Run adds this worker's new counts. Default 5s.
	Interval time.Duration
	// Replicas is the number of copies of the bucket. Default 1.
	Replicas int
	// MaxConflicts bounds the compare-and-swap retries of one Add when other
	// workers update the key at the same time. Default DefaultMaxConflicts
	// (100).
	MaxConflicts int
}

// Defaults of Config's fields.
const (
	DefaultBucket       = "AI_STATS"
	DefaultKey          = "totals"
	DefaultInterval     = 5 * time.Second
	DefaultMaxConflicts = 100
	DefaultReplicas     = 1
)

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Key == "" {
		c.Key = DefaultKey
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.MaxConflicts == 0 {
		c.MaxConflicts = DefaultMaxConflicts
	}
	return c
}

// Totals keeps the fleet's totals in a key-value bucket. Create it with
// Open; it is safe for concurrent use.
//
// An operator starts the totals over by deleting the bucket (nats kv rm
// AI_STATS -f) while workers run: the next Read or Add finds it gone and
// creates it again, and the totals count from then on.
type Totals struct {
	js  jetstream.JetStream
	cfg Config

	mu sync.Mutex
	kv jetstream.KeyValue
}

// Open creates the bucket named by cfg, or opens it if it exists.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Totals, error) {
	cfg = cfg.WithDefaults()
	if cfg.Interval < 0 || cfg.Replicas < 1 || cfg.Replicas > 5 || cfg.MaxConflicts < 1 {
		return nil, errors.New("fleet: want a positive interval, 1 to 5 replicas and at least 1 conflict retry")
	}
	f := &Totals{js: js, cfg: cfg}
	if _, err := f.open(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// open creates the bucket, or opens it if it exists, and uses it from now
// on.
func (f *Totals) open(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := jsutil.OpenKeyValue(ctx, f.js, jetstream.KeyValueConfig{
		Bucket:      f.cfg.Bucket,
		Description: "aibatch fleet-wide counters",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    f.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: create or open key-value bucket %q: %w", f.cfg.Bucket, err)
	}
	f.mu.Lock()
	f.kv = kv
	f.mu.Unlock()
	return kv, nil
}

// bucket is the bucket in use.
func (f *Totals) bucket() jetstream.KeyValue {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kv
}

// bucketGone reports whether err says the bucket's stream does not exist
// any more: with direct gets (the default of new buckets) nobody answers a
// read of a deleted bucket, and a write finds no stream.
func bucketGone(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// Read returns the fleet's totals; all zero when nothing was added yet, or
// since the bucket was deleted (it is created again).
func (f *Totals) Read(ctx context.Context) (Counters, error) {
	c, _, err := f.read(ctx)
	if bucketGone(err) {
		if _, err := f.open(ctx); err != nil {
			return Counters{}, err
		}
		c, _, err = f.read(ctx)
	}
	return c, err
}

// read returns the totals and their revision; revision 0 means the key does
// not exist (or was deleted).
func (f *Totals) read(ctx context.Context) (Counters, uint64, error) {
	e, err := f.bucket().Get(ctx, f.cfg.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Counters{}, 0, nil
	}
	if err != nil {
		return Counters{}, 0, fmt.Errorf("fleet: read totals %s/%s: %w", f.cfg.Bucket, f.cfg.Key, err)
	}
	var c Counters
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Counters{}, 0, fmt.Errorf("fleet: totals %s/%s are not JSON counters: %w", f.cfg.Bucket, f.cfg.Key, err)
	}
	return c, e.Revision(), nil
}

// Add adds d to the fleet's totals. When another worker updated the totals
// in between, it reads them again and retries, up to MaxConflicts times.
// When the bucket was deleted, it creates it again (once per call) and adds
// d to the new, empty totals.
func (f *Totals) Add(ctx context.Context, d Counters) error {
	if d.IsZero() {
		return nil
	}
	reopened := false
	reopen := func(err error) error {
		if reopened || !bucketGone(err) {
			return err
		}
		reopened = true
		_, err = f.open(ctx)
		return err
	}
	for range f.cfg.MaxConflicts {
		cur, rev, err := f.read(ctx)
		if err != nil {
			if err := reopen(err); err != nil {
				return err
			}
			continue // the bucket is back, empty: read again
		}
		body, err := json.Marshal(cur.Add(d))
		if err != nil {
			return fmt.Errorf("fleet: encode totals: %w", err)
		}
		kv := f.bucket()
		if rev == 0 {
			_, err = kv.Create(ctx, f.cfg.Key, body)
		} else {
			_, err = kv.Update(ctx, f.cfg.Key, body, rev)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			continue // another worker was first: read again
		case bucketGone(err) && !reopened:
			if err := reopen(err); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("fleet: update totals %s/%s: %w", f.cfg.Bucket, f.cfg.Key, err)
		}
	}
	return fmt.Errorf("fleet: update totals %s/%s: still conflicting after %d tries", f.cfg.Bucket, f.cfg.Key, f.cfg.MaxConflicts)
}

// Run adds this worker's new counts to the totals every Interval until ctx
// ends, then once more, so a clean stop loses nothing: call it after the
// engine has stopped counting, or cancel ctx only then. read returns the
// worker's counters since it started (CountersOf(engine.Stats())); they must
// only grow. A failed update is retried with the next one: its counts are
// not lost. onError, when not nil, is told of each failed update. Run
// returns the final update's error.
func (f *Totals) Run(ctx context.Context, read func() Counters, onError func(error)) error {
	var sent Counters
	flush := func(ctx context.Context) error {
		now := read()
		if err := f.Add(ctx, now.Sub(sent)); err != nil {
			return err
		}
		sent = now
		return nil
	}
	ticker := time.NewTicker(f.cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return flush(final)
		case <-ticker.C:
			if err := flush(ctx); err != nil && onError != nil && ctx.Err() == nil {
				onError(err)
			}
		}
	}
}
