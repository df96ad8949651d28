# fleetscan — run `make help` for the targets.
#
# Packages that import Trivy need GOEXPERIMENT=jsonv2 (Trivy imports
# encoding/json/v2). It is exported here so every target just works; plain
# `go` commands need it in the environment too.
export GOEXPERIMENT := jsonv2
# No registry is reachable from tests: testcontainers' reaper image cannot be
# pulled, so it is disabled and tests clean up after themselves.
export TESTCONTAINERS_RYUK_DISABLED := true

SHELL     := /bin/bash
GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS     := $(CURDIR)/.tools/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/fleetscan/fleetscan/pkg/version.Version=$(VERSION)
CMDS      := $(notdir $(wildcard cmd/*))

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every binary under cmd/ into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

.PHONY: tools
tools: ## Build the helper binaries tests need into .tools/bin (once; reused when present)
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/nats-server || $(GO) build -trimpath -o $(TOOLS)/nats-server github.com/nats-io/nats-server/v2

.PHONY: test
test: tools ## Run all tests: unit tests (with -race) and the integration module
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) test-integration

.PHONY: test-unit
test-unit: ## Run the main module's tests only
	$(GO) test -race -count=1 -timeout 30m ./...

.PHONY: test-integration
test-integration: tools ## Run the integration module (Docker + testcontainers)
	cd test/integration && FLEETSCAN_TOOLS=$(TOOLS) $(GO) test -count=1 -timeout 20m -v ./... 2>&1 | tee $(CURDIR)/.tools/integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SKIPPED|\s+---)' ; \
	  status=$${PIPESTATUS[0]}; \
	  if grep -q 'SKIPPED' $(CURDIR)/.tools/integration.log; then echo; echo '!!! SOME INTEGRATION TESTS WERE SKIPPED (see lines marked SKIPPED above) !!!'; fi; \
	  exit $$status

.PHONY: bench
bench: ## Run the micro-benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: lint
lint: ## go vet, plus staticcheck when it installs from the module proxy
	$(GO) vet ./...
	cd test/integration && $(GO) vet ./...
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2 || echo "staticcheck unavailable; skipped"
	@if test -x $(TOOLS)/staticcheck; then $(TOOLS)/staticcheck ./...; fi

.PHONY: clean
clean: ## Remove build outputs (keeps .tools)
	rm -rf $(BIN)
