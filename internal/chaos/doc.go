// Package chaos proves the worker's promise under the faults that happen in
// production: every request the stream accepted ends as exactly one result
// (and, when that result is an error, exactly one dead letter), whatever
// crashes on the way; and only a request that fails by its own fault (the
// poison the harness mixes in) ends as an error: an outage of the provider,
// a rejected key, killed workers or restarted servers dead-letter nothing.
//
// Run drives real worker processes (the ./cmd/worker binary, configured by
// environment variables as in production) against embedded NATS servers (one
// node, or a three-node JetStream cluster on loopback ports with streams of
// three replicas) and a fake OpenAI API (provider/openaitest) behind a
// fault-injecting reverse proxy (Proxy). While producers publish, each
// Scenario injects its faults:
//
//   - KillWorkers: workers are killed with SIGKILL mid-call (the proxy holds
//     a call of that worker), just after an answer reached the worker (while
//     it publishes results and acks), or at a random moment, then restarted.
//   - RestartServer: the single server is shut down and started again on the
//     same port and store directory; clients reconnect on their own.
//   - KillLeader: the cluster node leading AI_REQUESTS is shut down, then
//     started again on the same ports and store directory.
//   - ProviderFaults: the proxy answers HTTP 500, 429 with Retry-After,
//     hangs until the client times out, and rewrites successful answers to
//     drop an item, break the JSON or add an unknown id (FaultRates).
//   - Outage: for a while the proxy answers every call HTTP 500, 503 or 529
//     (Proxy.StartOutage).
//   - KeyRejected: for a while the proxy answers every call HTTP 401
//     invalid_api_key, as when the key was rotated (Proxy.StartKeyRejection).
//   - Poison: invalid bodies are mixed into the traffic (PoisonKinds).
//   - LoseWorker: a worker is killed
//     mid-call near the end of the traffic and never restarted.
//   - ResponseCache: the workers' response cache is on and the traffic asks
//     a few inputs over and over, so answers come from the cache and from
//     calls duplicates share, while workers are killed and the provider
//     misbehaves.
//
// DefaultScenarios runs each fault alone, then all together: the long form,
// with an outage of 2 minutes and a key rejected for 1 (`make chaos`);
// ShortScenarios cuts those periods to seconds (TestChaosShort).
//
// Producers give every request a unique id (in the body and as Nats-Msg-Id,
// so even a body that is not JSON is known by it) and republish with the
// same id until the stream acknowledges it. After the faults stop and the request stream has
// drained, a checker reads AI_REQUESTS, AI_RESULTS and AI_DEAD back from the
// broker and matches them to what the producers sent, and counts an error
// result or dead letter of a request that was not poison as an innocent dead
// letter, a breach like a lost or duplicated one. It never trusts the
// workers' own counters. A Report says what was injected and what was found;
// cmd/chaos prints it (`make chaos`).
package chaos
