// Package batch is the batching engine: it decides when a batch of requests
// is due, makes one combined provider call for it, and turns each request's
// answer into exactly one result (or one error result and one dead letter)
// before the request is acknowledged.
//
// The engine does not know NATS. It reads requests through a Queue and
// writes results through a Publisher, small interfaces declared in
// message.go; the jetstream package implements them on JetStream streams, and
// batch/batchtest in memory for tests.
//
// The engine is a pipeline of stages, each a small type in its own file,
// data flowing one way:
//
//	stage      file                      job
//	scheduler  scheduler.go, lanes.go,   WHEN to fetch, and WHEN a held group is due
//	           holding.go                (size, max_wait, retry, interval, window_full,
//	                                     forced, urgent, immediate); the holding window
//	intake     item.go, request.go       reads each message; rejects what can never succeed;
//	                                     its group key, and whether it goes alone
//	planner    planner.go                WHICH requests share a call (model, instructions,
//	                                     topic, parameters; token and output budgets)
//	caller     caller.go,                the provider calls (combined, or Batch API jobs),
//	           caller_async.go           recording each request's answer or failure
//	settler    settler.go, outgoing.go   WHAT each outcome does to its message: the only
//	                                     code that acks or hands back (Nak), and publishes
//	                                     results and dead letters
//	shadow     shadow.go, agreement.go,  after settling, in the background: a sample of the
//	           quality.go                requests answered in combined calls sent again
//	                                     alone, the answers compared, agreement recorded by
//	                                     batch size and position; the quality guard
//
// Engine (engine.go) wires the stages and owns their lifecycles. The settler
// tells the scheduler when handed-back requests return (handbacks.go), so the
// lane fetches them then; the quality guard limits a group's call size
// through the planner's adaptive sizes (groups_quality.go).
package batch
