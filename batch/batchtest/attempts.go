package batchtest

import (
	"context"
	"strconv"
	"sync"

	"github.com/aibatch/aibatch/batch"
)

// AttemptStore is an in-memory batch.AttemptStore. Records outlive an
// engine, as the real bucket's do, so a test can run a second engine on the
// same Broker and AttemptStore as a restarted worker would. It is safe for
// concurrent use; create it with NewAttemptStore.
type AttemptStore struct {
	mu      sync.Mutex
	records map[string]batch.AttemptRecord
}

var _ batch.AttemptStore = (*AttemptStore)(nil)

// NewAttemptStore returns an empty AttemptStore.
func NewAttemptStore() *AttemptStore {
	return &AttemptStore{records: map[string]batch.AttemptRecord{}}
}

func attemptKey(stream string, seq uint64) string { return stream + "." + strconv.FormatUint(seq, 10) }

// Get returns the record, or the zero record.
func (s *AttemptStore) Get(_ context.Context, stream string, seq uint64) (batch.AttemptRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records[attemptKey(stream, seq)], nil
}

// Put stores the record.
func (s *AttemptStore) Put(_ context.Context, stream string, seq uint64, r batch.AttemptRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[attemptKey(stream, seq)] = r
	return nil
}

// Delete forgets the record.
func (s *AttemptStore) Delete(_ context.Context, stream string, seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, attemptKey(stream, seq))
	return nil
}

// Record returns the record of the request at seq in stream, and whether
// there is one.
func (s *AttemptStore) Record(stream string, seq uint64) (batch.AttemptRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[attemptKey(stream, seq)]
	return r, ok
}

// Len returns how many records are kept.
func (s *AttemptStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.records)
}
