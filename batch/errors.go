package batch

import "errors"

// ErrStopped is returned by Flush when the engine is not running.
var ErrStopped = errors.New("batch: engine is not running")

// ErrNoBatchAPI is returned by New when async mode is asked of a provider
// without a Batch API.
var ErrNoBatchAPI = errors.New("batch: the provider has no Batch API for async mode")
