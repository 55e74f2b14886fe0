// Package batch is the batching engine: it decides when a batch of requests
// is due, makes one combined provider call for it, and turns each request's
// answer into exactly one result (or one error result and one dead letter)
// before the request is acknowledged.
//
// The engine does not know NATS. It reads requests through a Queue and writes
// results through a Publisher, both small interfaces declared here; the
// jetstream package implements them on a JetStream stream. That keeps the
// scheduling and outcome rules testable on their own, and lets end-to-end tests
// use a real server.
//
// Two files hold the rules a newcomer needs:
//   - scheduler.go: WHEN a batch is sent (size, interval, max_wait, urgent,
//     forced, immediate, retry).
//   - outcome.go: WHAT each request's answer does to its message (ack, retry
//     with backoff, or dead letter).
package batch
