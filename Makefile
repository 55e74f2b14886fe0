# aibatch: run `make` or `make help` for the targets.
SHELL := /bin/bash
GO ?= go
# The Go toolchain's own JSON v2 implementation behind encoding/json: the
# same API and behaviour (every test passes under both), and about 2.7x
# faster at decoding requests, the worker's largest CPU cost per request.
# Builds without it (plain `go build`) work the same, only slower.
export GOEXPERIMENT := jsonv2
BIN := bin
# make demo's loopback ports: make demo NATS_PORT=14222 AI_PORT=18089 ADMIN_PORT=18080
NATS_PORT ?= 4222
AI_PORT ?= 8089
ADMIN_PORT ?= 8080
# make demo-gateway's HTTP port, besides the three above.
GATEWAY_PORT ?= 8090
DEMO_NATS = nats://127.0.0.1:$(NATS_PORT)
DEMO_AI = 127.0.0.1:$(AI_PORT)
DEMO_ADMIN = 127.0.0.1:$(ADMIN_PORT)
DEMO_GATEWAY = 127.0.0.1:$(GATEWAY_PORT)
# The build's identity, in aibatch_build_info and the worker's start line
# (internal/buildinfo); override with make build VERSION=v1.2.0.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILDINFO := github.com/aibatch/aibatch/internal/buildinfo
LDFLAGS := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT)

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the worker, gateway, publisher and fake AI server into ./bin
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

.PHONY: image
image: ## Build the worker container image
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t aibatch-worker:dev .

.PHONY: demo
demo: demo-ports build ## Run 1,000 requests through an embedded JetStream and a local fake OpenAI server (ports: NATS_PORT, AI_PORT, ADMIN_PORT)
	@set -euo pipefail; mkdir -p data; \
	trap 'kill -TERM $$(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT; \
	$(BIN)/fakeai -addr $(DEMO_AI) 2>data/demo-fakeai.log & \
	OPENAI_BASE_URL=http://$(DEMO_AI)/v1 OPENAI_API_KEY=demo-key-not-secret \
	NATS_LISTEN=127.0.0.1:$(NATS_PORT) ADMIN_ADDR=$(DEMO_ADMIN) \
	MAX_BATCH_SIZE=50 BATCH_INTERVAL=30s MAX_WAIT=3s LOG_FORMAT=console \
	  $(BIN)/worker 2>data/demo-worker.log & \
	echo "worker: embedded JetStream on $(DEMO_NATS), store ./data, admin http://$(DEMO_ADMIN), log data/demo-worker.log"; \
	$(BIN)/publisher send --server $(DEMO_NATS) --synthetic 1000 --wait \
	  --provider-stats http://$(DEMO_AI)/stats

.PHONY: demo-gateway
demo-gateway: demo-gateway-ports build ## The OpenAI-compatible gateway: 200 concurrent chat completions and 500 embeddings through the official openai-go SDK, and the provider calls they took (ports: NATS_PORT, AI_PORT, ADMIN_PORT, GATEWAY_PORT)
	@set -euo pipefail; mkdir -p data; \
	trap 'kill -TERM $$(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT; \
	$(BIN)/fakeai -addr $(DEMO_AI) 2>data/demo-fakeai.log & \
	OPENAI_BASE_URL=http://$(DEMO_AI)/v1 OPENAI_API_KEY=demo-key-not-secret \
	NATS_LISTEN=127.0.0.1:$(NATS_PORT) ADMIN_ADDR=$(DEMO_ADMIN) \
	MAX_BATCH_SIZE=50 BATCH_INTERVAL=30s MAX_WAIT=2s LOG_FORMAT=console \
	  $(BIN)/worker 2>data/demo-worker.log & \
	NATS_URL=$(DEMO_NATS) GATEWAY_ADDR=$(DEMO_GATEWAY) GATEWAY_KEYS=demo-key=demo MAX_WAIT=2s LOG_FORMAT=console \
	  $(BIN)/gateway 2>data/demo-gateway.log & \
	echo "worker: embedded JetStream on $(DEMO_NATS), log data/demo-worker.log; gateway: http://$(DEMO_GATEWAY)/v1 (key demo-key), log data/demo-gateway.log"; \
	$(GO) run ./examples/gateway -base-url http://$(DEMO_GATEWAY)/v1 -key demo-key -stats-url http://$(DEMO_AI)/stats

.PHONY: demo-gateway-ports
demo-gateway-ports:
	@$(GO) run ./internal/cmd/portcheck NATS_PORT=127.0.0.1:$(NATS_PORT) AI_PORT=$(DEMO_AI) ADMIN_PORT=$(DEMO_ADMIN) GATEWAY_PORT=$(DEMO_GATEWAY)

# Before anything is built or started: a port in use fails the demo at once,
# naming it, rather than late (or into another server's stream).
.PHONY: demo-ports
demo-ports:
	@$(GO) run ./internal/cmd/portcheck NATS_PORT=127.0.0.1:$(NATS_PORT) AI_PORT=$(DEMO_AI) ADMIN_PORT=$(DEMO_ADMIN)

.PHONY: test
test: lint ## Run every test with the race detector
	$(GO) test -race -count=1 -timeout 15m ./...

.PHONY: lint
lint: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: bench
bench: ## Micro-benchmarks, then the JetStream harness: one table, figures in bench/results.json (~15 min)
	@set -euo pipefail; micro=$$(mktemp); trap 'rm -f "$$micro"' EXIT; \
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./batch/ ./jetstream/ | tee "$$micro"; \
	$(GO) run ./bench -micro "$$micro"

FUZZTIME ?= 30s
# Fuzz targets as package:FuzzName; their seed corpora are in each package's
# testdata/fuzz/ and also run with every `go test`.
FUZZ_TARGETS := ./batch:FuzzDecodeRequest ./batch:FuzzSubjects \
	./wire:FuzzDecodeRequestFast ./wire:FuzzAppendResult \
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
chaos: fuzz ## Fuzz every target for FUZZTIME, then fault injection, long form: 50,000 requests through killed workers, server restarts, a lost cluster leader, provider faults, a 2-minute provider outage, a rejected API key and poison (~13 min)
	$(GO) run ./internal/chaos/cmd/chaos -requests 50000
	CHAOS_LONG=1 $(GO) test -count=1 -run 'TestChaosCrashThenLongOutage' ./internal/chaos/

.PHONY: clean
clean: ## Remove built binaries and the demo's ./data
	rm -rf $(BIN) data
