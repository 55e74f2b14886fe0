// Package jobstore records, in a JetStream key-value bucket, which Batch API
// job holds each request of the engine's async mode, so a worker that
// restarts finds the job its requests are in and polls it instead of paying
// for a second one. Store implements batch.JobStore.
package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/jsutil"
)

// Store records which Batch API job holds each request, in a key-value
// bucket: one key per request (req.<stream>.<seq>: its batch and key) and one
// per batch (batch.<id>: its job). Create it with Open; it is safe for
// concurrent use.
type Store struct {
	kv jetstream.KeyValue
}

var _ batch.JobStore = (*Store)(nil)

// Config configures the job bucket.
type Config struct {
	// Bucket is the key-value bucket's name. Default DefaultBucket
	// ("AI_JOBS").
	Bucket string
	// TTL is how long a record is kept; it must outlast the longest job
	// (Batch APIs answer within 24 hours). Default DefaultTTL (48h).
	TTL time.Duration
	// Replicas is the bucket's number of copies. Default DefaultReplicas (1).
	Replicas int
}

// Defaults of Config's fields.
const (
	DefaultBucket   = "AI_JOBS"
	DefaultTTL      = 48 * time.Hour
	DefaultReplicas = 1
)

// Open creates the job bucket, or opens it (updating its settings to cfg) if
// it exists.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
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
		Description: "aibatch: the Batch API job holding each request",
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jobstore: create or update job bucket %q: %w", cfg.Bucket, err)
	}
	return &Store{kv: kv}, nil
}

func requestKey(stream string, seq uint64) string {
	return "req." + stream + "." + strconv.FormatUint(seq, 10)
}

func batchKey(batchID string) string { return "batch." + batchID }

// binding is what Bind stores under batch.<id>.
type binding struct {
	JobID     string    `json:"job_id"`
	Submitted time.Time `json:"submitted"`
}

// putConcurrency bounds the writes Reserve and Delete make at once.
const putConcurrency = 16

// each runs f for every record, putConcurrency at a time, and joins the
// errors.
func each(recs []batch.JobRecord, f func(batch.JobRecord) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, putConcurrency)
	for _, r := range recs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(r); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Reserve records each request's batch and key, before the job exists.
func (s *Store) Reserve(ctx context.Context, recs []batch.JobRecord) error {
	return each(recs, func(r batch.JobRecord) error {
		r.JobID, r.Submitted = "", time.Time{}
		body, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("jobstore: encode job record: %w", err)
		}
		if _, err := s.kv.Put(ctx, requestKey(r.Stream, r.StreamSeq), body); err != nil {
			return fmt.Errorf("jobstore: reserve request %d for batch %s: %w", r.StreamSeq, r.BatchID, err)
		}
		return nil
	})
}

// Bind records that batch batchID is job jobID.
func (s *Store) Bind(ctx context.Context, batchID, jobID string, submitted time.Time) error {
	body, err := json.Marshal(binding{JobID: jobID, Submitted: submitted})
	if err != nil {
		return fmt.Errorf("jobstore: encode job binding: %w", err)
	}
	if _, err := s.kv.Put(ctx, batchKey(batchID), body); err != nil {
		return fmt.Errorf("jobstore: bind batch %s to job %s: %w", batchID, jobID, err)
	}
	return nil
}

// Lookup returns the record of the request at seq in stream, with its job
// when its batch was bound to one.
func (s *Store) Lookup(ctx context.Context, stream string, seq uint64) (batch.JobRecord, bool, error) {
	var r batch.JobRecord
	e, err := s.kv.Get(ctx, requestKey(stream, seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("jobstore: look up job of request %d: %w", seq, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, false, fmt.Errorf("jobstore: decode job record of request %d: %w", seq, err)
	}
	b, err := s.kv.Get(ctx, batchKey(r.BatchID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, true, nil // reserved, never bound
	}
	if err != nil {
		return r, true, fmt.Errorf("jobstore: look up job of batch %s: %w", r.BatchID, err)
	}
	var bd binding
	if err := json.Unmarshal(b.Value(), &bd); err != nil {
		return r, true, fmt.Errorf("jobstore: decode job binding of batch %s: %w", r.BatchID, err)
	}
	r.JobID, r.Submitted = bd.JobID, bd.Submitted
	return r, true, nil
}

// Delete forgets the requests' records and their batches' bindings.
func (s *Store) Delete(ctx context.Context, recs []batch.JobRecord) error {
	batches := map[string]bool{}
	for _, r := range recs {
		batches[r.BatchID] = true
	}
	err := each(recs, func(r batch.JobRecord) error {
		return s.purge(ctx, requestKey(r.Stream, r.StreamSeq))
	})
	for id := range batches {
		if id != "" {
			err = errors.Join(err, s.purge(ctx, batchKey(id)))
		}
	}
	return err
}

func (s *Store) purge(ctx context.Context, key string) error {
	if err := s.kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("jobstore: forget %s: %w", key, err)
	}
	return nil
}
