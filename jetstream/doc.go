// Package jetstream puts the batching engine on NATS JetStream: it runs the
// embedded server, creates the request, result and dead-letter streams and the
// shared durable consumers, and implements the batch package's Queue and
// Publisher on them.
package jetstream
