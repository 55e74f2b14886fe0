package batch

import (
	"context"
	"time"
)

// JobRecord says which Batch API job holds a request. It is written in two
// steps: before the job is submitted the request is reserved for the
// engine's batch (BatchID, Key), and once the API named the job the batch is
// bound to it (JobID, Submitted). A record found without a JobID belongs to a
// worker that stopped between the two steps.
type JobRecord struct {
	// BatchID is the engine's id of the batch the request was sent in.
	BatchID string `json:"batch_id"`
	// JobID is the API's id of the job; empty until bound.
	JobID string `json:"job_id,omitempty"`
	// Key is the request's key inside the job.
	Key string `json:"key"`
	// Stream and StreamSeq name the request.
	Stream    string `json:"stream"`
	StreamSeq uint64 `json:"seq"`
	// Submitted is when the job was created.
	Submitted time.Time `json:"submitted"`
}

// JobStore records which job holds each request, so a restarted worker
// resumes polling instead of submitting again. The jetstream package keeps
// it in a key-value bucket.
type JobStore interface {
	// Reserve records, before submitting, that the requests go in batch
	// BatchID under their keys.
	Reserve(ctx context.Context, recs []JobRecord) error
	// Bind records that batch batchID became job jobID at submitted: one
	// write, so the time between the API creating the job and the engine
	// remembering it is as short as it can be.
	Bind(ctx context.Context, batchID, jobID string, submitted time.Time) error
	// Lookup returns the record for the request at seq in stream, with its
	// batch's JobID and Submitted filled in when bound, and false when
	// there is none.
	Lookup(ctx context.Context, stream string, seq uint64) (JobRecord, bool, error)
	// Delete forgets the requests' records once they are settled.
	Delete(ctx context.Context, recs []JobRecord) error
}

// WithJobStore sets where async mode records its jobs; required with
// Config.Async.
func WithJobStore(s JobStore) Option { return func(e *Engine) { e.jobs = s } }
