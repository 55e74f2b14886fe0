package jetstream

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/internal/jobstore"
)

// The async job store moved to internal/jobstore. These forwarders remain
// only because batch's own tests still open the store through this package;
// delete this file once they use batch/batchtest or internal/jobstore.

// JobStore is jobstore.Store.
//
// Deprecated: use jobstore.Store in internal/jobstore.
type JobStore = jobstore.Store

// JobStoreConfig is jobstore.Config.
//
// Deprecated: use jobstore.Config in internal/jobstore.
type JobStoreConfig = jobstore.Config

// EnsureJobStore is jobstore.Open.
//
// Deprecated: use jobstore.Open in internal/jobstore.
func EnsureJobStore(ctx context.Context, js jetstream.JetStream, cfg JobStoreConfig) (*JobStore, error) {
	return jobstore.Open(ctx, js, cfg)
}
