// Package client lets a Go service send AI requests to aibatch workers and
// wait for their results.
//
//	c, err := client.New(nc, client.WithTopic("billing"))
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.Do(ctx, wire.Request{Input: "Summarize: ...", Model: "gpt-4o-mini"})
//
// Do publishes the request to ai.requests.<topic> in the AI_REQUESTS stream
// (with a Nats-Msg-Id header, so a re-send within the stream's duplicate
// window is dropped, and a Batch-Reply-To header naming the client's own
// subject under ai.results.) and waits for its result. Submit returns at once
// with a Pending handle to wait on later; Urgent and SubmitUrgent use the
// urgent lane (ai.urgent.<topic>), which the worker sends within milliseconds
// instead of waiting for a batch.
//
// Every request ends as exactly one stored result, answered or not; cancelling
// a wait never cancels the request. A client reads all its results through one
// ordered JetStream consumer on its reply subject, whatever the number of
// requests in flight, and since AI_RESULTS stores them, a client that gave up
// or restarted can read them later by request id with Fetch.
//
// The wire format (subjects, headers, JSON) is described in
// docs/wire-format.md; Request and Result are the worker's own types from
// package batch, so they cannot drift from what the worker reads and writes.
package client
