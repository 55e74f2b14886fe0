// Package batchtest holds in-memory test doubles for the batch engine: a
// Broker that behaves like the JetStream topology aibatch runs on wherever
// the engine relies on it, a Provider that answers or misbehaves on command,
// and a JobStore for async mode. Engine tests built on them need no NATS
// server and run inside testing/synctest bubbles, where the engine's timers
// (poll intervals, ack waits, backoffs, MaxWait) pass in no real time.
//
// The doubles use only time.Now, timers, channels and sync: nothing spins,
// nothing runs in the background, and a caller waiting on one (Queue.Wait, a
// held Provider call) is durably blocked in the synctest sense. Create them
// inside the bubble that uses them.
//
// RunBrokerContract is the contract the Broker shares with the real adapter
// in package jetstream: the jetstream package runs the same suite against an
// embedded NATS server, so a behaviour of the double that a test relies on is
// one the real broker has.
package batchtest
