// Package jetstream is the batching engine's adapter to NATS JetStream, and
// only that: it runs the embedded server (RunServer), creates the request,
// result and dead-letter streams and the shared durable consumers
// (Topology, Ensure), implements batch.Queue on a pull consumer (Queue) and
// batch.Publisher with JetStream publish acks (Publisher), wraps delivered
// messages as batch.Message, and turns NATS credentials settings into
// connection options (AuthConfig).
//
// What the worker keeps in JetStream beside the engine's streams lives
// elsewhere: the fleet's totals and fleet flush in internal/fleet, the async
// mode's job records in internal/jobstore. The wire format (bodies, headers,
// default subjects) is package wire.
package jetstream
