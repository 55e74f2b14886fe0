package batchtest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aibatch/aibatch/batch"
)

// JobStore is an in-memory batch.JobStore for async-mode engine tests: it
// keeps what jobstore.Store (internal/jobstore) keeps in its key-value bucket, one record per
// request and one job binding per batch. It is safe for concurrent use;
// create it with NewJobStore.
type JobStore struct {
	mu       sync.Mutex
	requests map[requestKey]batch.JobRecord
	bindings map[string]binding
	failing  int
}

type requestKey struct {
	stream string
	seq    uint64
}

type binding struct {
	jobID     string
	submitted time.Time
}

var _ batch.JobStore = (*JobStore)(nil)

// NewJobStore returns an empty JobStore.
func NewJobStore() *JobStore {
	return &JobStore{requests: map[requestKey]batch.JobRecord{}, bindings: map[string]binding{}}
}

// FailNext makes the next n calls of any method fail with an error wrapping
// ErrInjected, changing nothing.
func (s *JobStore) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing += n
}

// failLocked uses up one injected failure of op.
func (s *JobStore) failLocked(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("batchtest: job store %s: %w", op, err)
	}
	if s.failing > 0 {
		s.failing--
		return fmt.Errorf("batchtest: job store %s: %w", op, ErrInjected)
	}
	return nil
}

// Reserve records each request's batch and key, without a job.
func (s *JobStore) Reserve(ctx context.Context, recs []batch.JobRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failLocked(ctx, "reserve"); err != nil {
		return err
	}
	for _, r := range recs {
		r.JobID, r.Submitted = "", time.Time{}
		s.requests[requestKey{r.Stream, r.StreamSeq}] = r
	}
	return nil
}

// Bind records that batch batchID is job jobID, submitted at submitted.
func (s *JobStore) Bind(ctx context.Context, batchID, jobID string, submitted time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failLocked(ctx, "bind"); err != nil {
		return err
	}
	s.bindings[batchID] = binding{jobID: jobID, submitted: submitted}
	return nil
}

// Lookup returns the record of the request at seq in stream, with its
// batch's job when the batch was bound, and false when there is none.
func (s *JobStore) Lookup(ctx context.Context, stream string, seq uint64) (batch.JobRecord, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failLocked(ctx, "lookup"); err != nil {
		return batch.JobRecord{}, false, err
	}
	r, ok := s.requests[requestKey{stream, seq}]
	if !ok {
		return batch.JobRecord{}, false, nil
	}
	return s.boundLocked(r), true, nil
}

func (s *JobStore) boundLocked(r batch.JobRecord) batch.JobRecord {
	if b, ok := s.bindings[r.BatchID]; ok {
		r.JobID, r.Submitted = b.jobID, b.submitted
	}
	return r
}

// Delete forgets the requests' records and their batches' bindings.
func (s *JobStore) Delete(ctx context.Context, recs []batch.JobRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failLocked(ctx, "delete"); err != nil {
		return err
	}
	for _, r := range recs {
		delete(s.requests, requestKey{r.Stream, r.StreamSeq})
		delete(s.bindings, r.BatchID)
	}
	return nil
}

// Records returns every request record, with its job when bound, by stream
// and sequence.
func (s *JobStore) Records() []batch.JobRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]batch.JobRecord, 0, len(s.requests))
	for _, r := range s.requests {
		out = append(out, s.boundLocked(r))
	}
	slices.SortFunc(out, func(a, b batch.JobRecord) int {
		return cmp.Or(cmp.Compare(a.Stream, b.Stream), cmp.Compare(a.StreamSeq, b.StreamSeq))
	})
	return out
}

// Len returns how many keys jobstore.Store's bucket would hold: one per
// request record and one per bound batch.
func (s *JobStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests) + len(s.bindings)
}
