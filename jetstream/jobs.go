package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
)

// JobStore records which Batch API job holds each request, in a key-value
// bucket with one key per request (<stream>.<seq>). It implements
// batch.JobStore.
type JobStore struct {
	kv jetstream.KeyValue
}

var _ batch.JobStore = (*JobStore)(nil)

// JobStoreConfig configures the job bucket.
type JobStoreConfig struct {
	// Bucket is the key-value bucket's name. Default "AI_JOBS".
	Bucket string
	// TTL is how long a record is kept; it must outlast the longest job
	// (Batch APIs answer within 24 hours). Default 48h.
	TTL time.Duration
	// Replicas is the bucket's number of copies. Default 1.
	Replicas int
}

// EnsureJobStore creates the job bucket, or opens it if it exists.
func EnsureJobStore(ctx context.Context, js jetstream.JetStream, cfg JobStoreConfig) (*JobStore, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = "AI_JOBS"
	}
	if cfg.TTL == 0 {
		cfg.TTL = 48 * time.Hour
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "aibatch: the Batch API job holding each request",
		TTL:         cfg.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: create or update job bucket %q: %w", cfg.Bucket, err)
	}
	return &JobStore{kv: kv}, nil
}

func jobKey(stream string, seq uint64) string { return stream + "." + strconv.FormatUint(seq, 10) }

// Save records each request's job.
func (s *JobStore) Save(ctx context.Context, recs []batch.JobRecord) error {
	var errs []error
	for _, r := range recs {
		body, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("jetstream: encode job record: %w", err)
		}
		if _, err := s.kv.Put(ctx, jobKey(r.Stream, r.StreamSeq), body); err != nil {
			errs = append(errs, fmt.Errorf("jetstream: record job of request %d: %w", r.StreamSeq, err))
		}
	}
	return errors.Join(errs...)
}

// Lookup returns the job record of the request at seq in stream.
func (s *JobStore) Lookup(ctx context.Context, stream string, seq uint64) (batch.JobRecord, bool, error) {
	var r batch.JobRecord
	e, err := s.kv.Get(ctx, jobKey(stream, seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("jetstream: look up job of request %d: %w", seq, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, false, fmt.Errorf("jetstream: decode job record of request %d: %w", seq, err)
	}
	return r, true, nil
}

// Delete forgets the records.
func (s *JobStore) Delete(ctx context.Context, recs []batch.JobRecord) error {
	var errs []error
	for _, r := range recs {
		if err := s.kv.Purge(ctx, jobKey(r.Stream, r.StreamSeq)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			errs = append(errs, fmt.Errorf("jetstream: forget job of request %d: %w", r.StreamSeq, err))
		}
	}
	return errors.Join(errs...)
}
