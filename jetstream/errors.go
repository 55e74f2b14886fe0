package jetstream

import "errors"

// ErrInvalidTopology is wrapped by the errors Topology.Validate returns.
var ErrInvalidTopology = errors.New("jetstream: invalid topology")
