// Package respcache keeps the engine's response cache (RESPONSE_CACHE_TTL)
// in a JetStream key-value bucket, AI_CACHE by default, one key per request
// key, each entry expiring with the bucket's TTL. Store implements
// batch.ResponseCache.
//
// Emptying the cache is emptying the bucket: `nats kv del AI_CACHE` (the
// worker creates it again at its next start), or `publisher cache-purge`,
// which purges every entry while the workers run.
package respcache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/jsutil"
)

// Defaults of Config's fields.
const (
	DefaultBucket   = "AI_CACHE"
	DefaultReplicas = 1
)

// DefaultTTL is RESPONSE_CACHE_TTL's default, 0: the cache is off unless it
// is set. Open refuses a TTL of 0 (ErrNoTTL).
const DefaultTTL time.Duration = 0

// Config configures the bucket.
type Config struct {
	// Bucket is the key-value bucket's name. Default DefaultBucket.
	Bucket string
	// TTL is how long an answer is kept; it must be above 0.
	TTL time.Duration
	// Replicas is the bucket's number of copies. Default DefaultReplicas.
	Replicas int
	// MaxBytes bounds the bucket's size; 0 means no bound. A full bucket
	// refuses new entries (the answers are still delivered, and not cached).
	MaxBytes int64
}

// Store implements batch.ResponseCache on a key-value bucket. It is safe for
// concurrent use.
type Store struct {
	kv jetstream.KeyValue
}

var _ batch.ResponseCache = (*Store)(nil)

// ErrNoTTL is returned by Open for a Config without a TTL: an answer kept
// for ever would outlive every change of the model behind its name.
var ErrNoTTL = errors.New("respcache: the cache needs a TTL above 0")

// Open creates the bucket, or opens it (updating its settings to cfg) if
// it exists.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.TTL <= 0 {
		return nil, ErrNoTTL
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = DefaultReplicas
	}
	kv, err := jsutil.OpenKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "aibatch: answers by request key (RESPONSE_CACHE_TTL)",
		TTL:         cfg.TTL,
		MaxBytes:    cfg.MaxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("respcache: create or update bucket %q: %w", cfg.Bucket, err)
	}
	return &Store{kv: kv}, nil
}

// Get returns the entry under key; an error wrapping batch.ErrCacheMiss when
// there is none (never stored, expired, or purged).
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("respcache: %s: %w", key, batch.ErrCacheMiss)
	}
	if err != nil {
		return nil, fmt.Errorf("respcache: read %s: %w", key, err)
	}
	return e.Value(), nil
}

// Put stores value under key; the entry expires with the bucket's TTL.
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	if _, err := s.kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("respcache: write %s: %w", key, err)
	}
	return nil
}

// Purge empties the bucket named bucket (DefaultBucket when empty): every
// answer goes, and the next request of each key is sent to the provider.
// It returns how many entries it removed; a bucket that does not exist
// holds none.
func Purge(ctx context.Context, js jetstream.JetStream, bucket string) (int, error) {
	if bucket == "" {
		bucket = DefaultBucket
	}
	// A bucket is the stream KV_<bucket>; purging it keeps its settings.
	st, err := js.Stream(ctx, "KV_"+bucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("respcache: open bucket %q's stream: %w", bucket, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("respcache: read bucket %q: %w", bucket, err)
	}
	if err := st.Purge(ctx); err != nil {
		return 0, fmt.Errorf("respcache: purge bucket %q: %w", bucket, err)
	}
	return int(info.State.Msgs), nil
}
