// Package wire is aibatch's wire format: the JSON bodies producers publish
// and the worker answers with, the headers both sides read, the default
// subjects and stream names, and the Nats-Msg-Id values that make results
// and dead letters unique.
//
// It imports only the standard library, so a service that publishes
// requests or reads results can use these types without pulling in NATS,
// the worker or its logger. docs/wire-format.md describes the same format in
// prose, and docs/schema holds it as JSON Schemas; a test checks the three
// agree.
package wire
