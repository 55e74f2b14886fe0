package main

// Defaults of the settings only the worker has. Every other setting defaults
// to the constant of the package that owns it: batch.Default*,
// jetstream.Default*, wire.*, admin.DefaultAddr, cost.DefaultBatchDiscount,
// ratelimit.NoLimit. A `default=` in config's struct tags restates one of
// these (a tag cannot name a constant); defaults_test.go checks that each
// does, and that README.md's configuration table and the Kubernetes
// manifests agree with the tags.
const (
	// defaultStoreDir holds the embedded NATS server's files.
	defaultStoreDir = "./data"
	// defaultProvider is the API the worker calls.
	defaultProvider = "openai"
	// defaultModel is the model of requests that name none.
	defaultModel = "gpt-4o-mini"
	// defaultMaxBatchTokens caps a call's estimated prompt tokens. The
	// worker caps calls unless MAX_BATCH_TOKENS=0; batch.Config's zero
	// MaxBatchTokens means no cap, so a library caller opts in instead.
	defaultMaxBatchTokens = 100_000
	defaultLogLevel       = "info"
	defaultLogFormat      = "json"
)
