// Package attempts keeps each request's batch.AttemptRecord in a JetStream
// key-value bucket, so that a request's attempts are spent only on failures
// of its own whatever worker delivers it next: a hand-back while the provider
// was down, or at a shutdown, is recorded as free.
package attempts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/jsutil"
)

// Defaults of Config's fields.
const (
	DefaultBucket = "AI_ATTEMPTS"
	// DefaultTTL outlasts batch.DefaultRequestTTL, after which a request
	// ends whatever its record says.
	DefaultTTL      = 48 * time.Hour
	DefaultReplicas = 1
)

// Config configures the bucket.
type Config struct {
	// Bucket is the key-value bucket's name. Default DefaultBucket.
	Bucket string
	// TTL is how long a record is kept: longer than REQUEST_TTL. A record
	// is deleted when its request ends, so the TTL only clears records
	// whose delete was lost. Default DefaultTTL.
	TTL time.Duration
	// Replicas is the bucket's number of copies. Default DefaultReplicas.
	Replicas int
}

// Store implements batch.AttemptStore on a key-value bucket, one key per
// request: <stream>.<seq>.
type Store struct {
	kv jetstream.KeyValue
}

var _ batch.AttemptStore = (*Store)(nil)

// Ensure creates the bucket, or opens it if it exists.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = DefaultReplicas
	}
	kv, err := jsutil.OpenKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "aibatch: the attempts each request spent, apart from its deliveries",
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("attempts: create or update bucket %q: %w", cfg.Bucket, err)
	}
	return &Store{kv: kv}, nil
}

func key(stream string, seq uint64) string { return stream + "." + strconv.FormatUint(seq, 10) }

// Get returns the request's record, or the zero record when there is none.
func (s *Store) Get(ctx context.Context, stream string, seq uint64) (batch.AttemptRecord, error) {
	e, err := s.kv.Get(ctx, key(stream, seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return batch.AttemptRecord{}, nil
	}
	if err != nil {
		return batch.AttemptRecord{}, fmt.Errorf("attempts: read %s: %w", key(stream, seq), err)
	}
	var r batch.AttemptRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return batch.AttemptRecord{}, fmt.Errorf("attempts: decode %s: %w", key(stream, seq), err)
	}
	return r, nil
}

// Put stores the request's record.
func (s *Store) Put(ctx context.Context, stream string, seq uint64, r batch.AttemptRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("attempts: encode: %w", err)
	}
	if _, err := s.kv.Put(ctx, key(stream, seq), data); err != nil {
		return fmt.Errorf("attempts: write %s: %w", key(stream, seq), err)
	}
	return nil
}

// Delete forgets the request's record; a record that is not there is not an
// error.
func (s *Store) Delete(ctx context.Context, stream string, seq uint64) error {
	// Purge, not Delete: a delete marker would stay until the TTL.
	if err := s.kv.Purge(ctx, key(stream, seq)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("attempts: delete %s: %w", key(stream, seq), err)
	}
	return nil
}
