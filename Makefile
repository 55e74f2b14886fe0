# aibatch: run `make` or `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
DEMO_NATS := nats://127.0.0.1:4222
DEMO_AI := 127.0.0.1:8089

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the worker, publisher and fake AI server into ./bin
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: image
image: ## Build the worker container image
	docker build -t aibatch-worker:dev .

.PHONY: demo
demo: build ## Run 1,000 requests through an embedded JetStream and a local fake OpenAI server
	@set -euo pipefail; mkdir -p data; \
	trap 'kill -TERM $$(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT; \
	$(BIN)/fakeai -addr $(DEMO_AI) 2>data/demo-fakeai.log & \
	OPENAI_BASE_URL=http://$(DEMO_AI)/v1 OPENAI_API_KEY=demo-key-not-secret \
	MAX_BATCH_SIZE=50 BATCH_INTERVAL=30s MAX_WAIT=3s LOG_FORMAT=console \
	  $(BIN)/worker 2>data/demo-worker.log & \
	echo "worker: embedded JetStream on $(DEMO_NATS), store ./data, log data/demo-worker.log"; \
	$(BIN)/publisher send --server $(DEMO_NATS) --synthetic 1000 --wait \
	  --provider-stats http://$(DEMO_AI)/stats

.PHONY: test
test: lint ## Run every test with the race detector
	$(GO) test -race -count=1 -timeout 15m ./...

.PHONY: lint
lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: bench
bench: ## Micro-benchmarks, then the JetStream harness: one table, figures in bench/results.json (~9 min)
	@set -euo pipefail; micro=$$(mktemp); trap 'rm -f "$$micro"' EXIT; \
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./batch/ ./jetstream/ | tee "$$micro"; \
	$(GO) run ./bench -micro "$$micro"

FUZZTIME ?= 30s
# Fuzz targets as package:FuzzName; their seed corpora are in each package's
# testdata/fuzz/ and also run with every `go test`.
FUZZ_TARGETS := ./batch:FuzzDecodeRequest ./batch:FuzzSubjects \
	./provider/openai:FuzzParseAnswer ./provider/openai:FuzzAnswerRoundTrip \
	./provider/anthropic:FuzzParseAnswer ./provider/anthropic:FuzzAnswerRoundTrip \
	./provider/httpapi:FuzzParseAnswer ./provider/httpapi:FuzzAnswerRoundTrip

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s), one after another; a failure leaves its input in testdata/fuzz/
	@set -euo pipefail; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; echo "== $$name ($$pkg, $(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done

.PHONY: chaos
chaos: fuzz ## Fuzz every target for FUZZTIME, then fault injection, long form: 50,000 requests through killed workers, server restarts, a lost cluster leader, provider faults and poison (~8 min)
	$(GO) run ./internal/chaos/cmd/chaos -requests 50000

.PHONY: clean
clean: ## Remove built binaries and the demo's ./data
	rm -rf $(BIN) data
