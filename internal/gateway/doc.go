// Package gateway serves an OpenAI-compatible HTTP API in front of the
// aibatch request stream, so that applications using an official OpenAI SDK
// get batching by changing the base URL and the key.
//
// Routes:
//
//	POST /v1/chat/completions   a chat completion; "stream": true answers as server-sent events once the result is in
//	POST /v1/embeddings         embeddings of a string or an array of strings (one request per element, answered in order)
//	GET  /v1/models             the models the workers are configured for; GET /v1/models/{id} one of them
//	GET  /healthz               200 while the process serves HTTP
//	GET  /readyz                200 once connected to NATS and reading results; 503 naming what it waits for
//	GET  /metrics               Prometheus metrics
//
// Each HTTP request becomes one wire request (wire.Request) per answer it
// asks for, published to ai.requests.<topic> (ai.urgent.<topic> with
// "X-Batch-Priority: urgent"), where the topic is the one the caller's key
// maps to. The gateway waits for the result and answers in OpenAI's shape,
// with headers saying how the request was batched. Results go to a reply
// subject under ai.results., so AI_RESULTS stores them: a caller that timed
// out reads its result later by the request id the 504 names.
//
// Errors use OpenAI's JSON error shape and the status an SDK expects: 400
// for a request the wire format cannot carry (naming the field), 401 for a
// missing or wrong key, 429 with Retry-After when the request stream is
// full, 502 for a provider error result, 504 when GATEWAY_TIMEOUT passes.
// docs/gateway.md describes every mapping.
package gateway
