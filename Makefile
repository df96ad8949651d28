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
LDFLAGS   := -s -w -X github.com/fleetscan/fleetscan/internal/version.Version=$(VERSION)
CMDS      := $(notdir $(wildcard cmd/*))
# Trivy's version as go.mod pins it (stamped into the CLI built by `make tools`).
TRIVY_VERSION := $(shell $(GO) list -m -f '{{.Version}}' github.com/aquasecurity/trivy 2>/dev/null | sed 's/^v//')

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
	@# Static (CGO_ENABLED=0): the integration tests run these in FROM scratch images.
	@test -x $(TOOLS)/nats-server || CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(TOOLS)/nats-server github.com/nats-io/nats-server/v2
	@test -x $(TOOLS)/registry || CGO_ENABLED=0 GOBIN=$(TOOLS) $(GO) install -trimpath -ldflags '-s -w' github.com/distribution/distribution/v3/cmd/registry@v3.1.2
	@test -x $(TOOLS)/versitygw || CGO_ENABLED=0 GOBIN=$(TOOLS) $(GO) install -trimpath -ldflags '-s -w' github.com/versity/versitygw/cmd/versitygw@v1.8.0
	@# The Trivy CLI from the same module version fleetscan links, for the
	@# fidelity tests (library findings == CLI findings). ~5 min cold; no
	@# -trimpath so it reuses the packages `go test` already compiled.
	@test -x $(TOOLS)/trivy || { $(GO) build -ldflags '-s -w -X github.com/aquasecurity/trivy/internal/version/app.ver=$(TRIVY_VERSION)' -o $(TOOLS)/trivy.tmp github.com/aquasecurity/trivy/cmd/trivy && mv $(TOOLS)/trivy.tmp $(TOOLS)/trivy; }
	@# nk makes the NATS nkeys of the install instructions (deploy/README.md).
	@test -x $(TOOLS)/nk || CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(TOOLS)/nk github.com/nats-io/nkeys/nk
	@$(MAKE) --no-print-directory $(TOOLS)/helm

# The Helm CLI for the chart tests, `make chart` and `make chart-push`, from
# the Go module proxy through the hack/helm wrapper module (not part of
# go.work, so Helm's dependencies stay out of fleetscan's go.mod). Rebuilt
# when hack/helm/go.mod changes; ~270 CPU-s cold (~2.5 min on 2 idle cores).
HELM_VERSION = $(shell cd hack/helm && GOWORK=off $(GO) list -m -f '{{.Version}}' helm.sh/helm/v4)
$(TOOLS)/helm: hack/helm/go.mod hack/helm/go.sum
	@mkdir -p $(TOOLS)
	cd hack/helm && GOWORK=off GOEXPERIMENT= CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)' -o $(TOOLS)/helm.tmp helm.sh/helm/v4/cmd/helm
	mv $(TOOLS)/helm.tmp $(TOOLS)/helm

# kube-apiserver and etcd for tests that need a real Kubernetes API server
# (envtest), and kubectl. Built from the Go module proxy through the hack/kube-tools wrapper
# module (not part of go.work). The cold build takes ~10 CPU-minutes and ~3 GB
# of RAM; later runs reuse the binaries.
KUBE_VERSION := v1.37.2
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37

.PHONY: kube-tools
kube-tools: ## Build kube-apiserver, etcd and kubectl into .tools/bin (once; reused when present)
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/etcd || { cd hack/kube-tools && GOWORK=off GOEXPERIMENT= $(GO) build -trimpath -ldflags '-s -w' -o $(TOOLS)/etcd.tmp go.etcd.io/etcd/server/v3 && mv $(TOOLS)/etcd.tmp $(TOOLS)/etcd; }
	@test -x $(TOOLS)/kube-apiserver || { cd hack/kube-tools && GOWORK=off GOEXPERIMENT= $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(TOOLS)/kube-apiserver.tmp k8s.io/kubernetes/cmd/kube-apiserver && mv $(TOOLS)/kube-apiserver.tmp $(TOOLS)/kube-apiserver; }
	@# kubectl runs the documented install sequence in deploy's tests (~45 CPU-s
	@# after kube-apiserver: they share most packages).
	@test -x $(TOOLS)/kubectl || { cd hack/kube-tools && GOWORK=off GOEXPERIMENT= $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $(TOOLS)/kubectl.tmp k8s.io/kubernetes/cmd/kubectl && mv $(TOOLS)/kubectl.tmp $(TOOLS)/kubectl; }

# Headless Chromium renders the HTML report in a test. `make test` installs
# it through apt when it runs as root on Debian/Ubuntu; anywhere else it
# stops and prints the command to run. DEBIAN_VERSION_FILE is a seam for
# the Makefile's own test.
DEBIAN_VERSION_FILE ?= /etc/debian_version
CHROMIUM_NAMES      := chromium chromium-browser

.PHONY: test-deps
test-deps: ## Install what the tests need beyond Go and Docker (Chromium: through apt as root on Debian, else says how)
	@for b in $(CHROMIUM_NAMES); do command -v $$b >/dev/null 2>&1 && exit 0; done; \
	if [ "$$(id -u)" = 0 ] && [ -f $(DEBIAN_VERSION_FILE) ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "test-deps: installing chromium with apt-get (the HTML report is checked in headless Chromium)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || exit 1; \
	elif [ -f $(DEBIAN_VERSION_FILE) ]; then \
	  echo "test-deps: the tests need Chromium (the HTML report is checked in headless Chromium); run:" >&2; \
	  echo "  sudo apt-get update && sudo apt-get install -y chromium" >&2; exit 1; \
	else \
	  echo "test-deps: the tests need Chromium (the HTML report is checked in headless Chromium); install it:" >&2; \
	  echo "  Fedora: sudo dnf install -y chromium   Alpine: apk add chromium   macOS: brew install --cask chromium" >&2; exit 1; \
	fi

.PHONY: test
test: test-deps tools kube-tools ## Run all tests: unit tests (with -race) and the integration module
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) test-integration

.PHONY: test-unit
test-unit: test-deps tools kube-tools ## Run the main module's tests only (builds the Trivy CLI, kube-apiserver and etcd once)
	$(GO) test -race -count=1 -timeout 30m ./...

.PHONY: test-fast
test-fast: ## Inner loop: the main module's tests with Go alone (no .tools binaries, no Docker, no Chromium); tests that need them skip under -short
	$(GO) test -short ./...

.PHONY: test-integration
test-integration: tools kube-tools ## Run the integration module (Docker + testcontainers; builds the images first)
	@# Without a Docker engine every test prints a SKIPPED line instead; with
	@# CI=true that fails the run (no Docker in CI must be red, not green).
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory images; \
	  elif [ "$$CI" = true ]; then echo 'test-integration: no Docker engine, and CI=true: the integration tests cannot be skipped in CI' >&2; exit 1; \
	  else echo 'SKIPPED: no Docker engine: images not built'; fi
	cd test/integration && FLEETSCAN_TOOLS=$(TOOLS) FLEETSCAN_IT_IMAGES_OCI=$(IMAGES_CTX)/oci $(GO) test -count=1 -timeout 20m -v ./... 2>&1 | tee $(CURDIR)/.tools/integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|SKIPPED|\s+---)' ; \
	  status=$${PIPESTATUS[0]}; \
	  if grep -q 'SKIPPED' $(CURDIR)/.tools/integration.log; then echo; echo '!!! SOME INTEGRATION TESTS WERE SKIPPED (see lines marked SKIPPED above) !!!'; \
	    if [ "$$CI" = true ]; then echo 'test-integration: CI=true: a skipped integration test fails the run' >&2; status=1; fi; fi; \
	  exit $$status

.PHONY: demo
demo: ## Run the real pipeline offline on a generated fleet (fleetscan exits 1 there: it finds SLA breaches)
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/fleetscan ./cmd/fleetscan
	@$(BIN)/fleetscan demo $(DEMO_ARGS); status=$$?; \
	  if [ $$status -eq 1 ]; then echo; echo "make demo: fleetscan exited 1 — SLA breaches found, as the demo intends."; exit 0; fi; \
	  exit $$status

.PHONY: docs
docs: build ## Regenerate docs/configuration.md from the binaries' --help
	hack/gen-config-docs.sh $(BIN)

# The fleet benchmark (hack/fleetbench): BENCH_IMAGES=40 for a quick run
# (its table is then only printed, not written to BENCHMARKS.md);
# BENCH_PKGS=./... runs every package's micro-benchmarks.
BENCH_IMAGES ?= 200
BENCH_MD     ?= $(if $(filter 200,$(BENCH_IMAGES)),BENCHMARKS.md,)
BENCH_PKGS   ?= ./internal/imageref/ ./internal/dispatcher/ ./internal/queue/ ./internal/report/ ./internal/reporter/ ./internal/sla/ ./internal/fixture/
BENCH_FLAGS  ?=

.PHONY: bench
bench: tools ## Run the micro-benchmarks, then the fleet benchmark (BENCH_IMAGES=40 for a quick run)
	$(GO) test -run '^$$' -bench . -benchmem $(BENCH_PKGS)
	$(GO) build -o $(TOOLS)/fleetbench ./hack/fleetbench
	$(TOOLS)/fleetbench --images $(BENCH_IMAGES) --benchmarks-md '$(BENCH_MD)' $(BENCH_FLAGS)

.PHONY: lint
lint: ## go vet, plus staticcheck when it installs from the module proxy
	$(GO) vet ./...
	cd test/integration && $(GO) vet ./...
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2 || echo "staticcheck unavailable; skipped"
	@if test -x $(TOOLS)/staticcheck; then $(TOOLS)/staticcheck ./...; fi

# Container images FROM scratch, built without pulling anything (no registry
# is reachable here) and without buildx: every command is cross-compiled
# statically for each of IMAGE_PLATFORMS, and hack/images packs each binary
# with the host's CA bundle into a FROM scratch image (nonroot 65532, /tmp,
# the binary as entrypoint) and the images of a command into one OCI index,
# written as an OCI layout to .tools/images/$(IMAGE_TAG)/oci/<name>. The
# image for the host's platform is loaded into Docker as
# fleetscan/<name>:$(IMAGE_TAG) (the tag deploy/ and the integration tests
# use); PUSH=registry/prefix pushes every index to prefix/<name>:$(IMAGE_TAG).
# Only commands with a main.go are built. The root Dockerfile builds the same
# single-platform images where golang can be pulled.
IMAGE_TAG       ?= dev
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
IMAGE_CMDS      := $(patsubst cmd/%/main.go,%,$(wildcard cmd/*/main.go))
IMAGES_CTX      := $(CURDIR)/.tools/images/$(IMAGE_TAG)
CA_BUNDLE       ?= $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem))
PUSH            ?=
comma           := ,
empty           :=
space           := $(empty) $(empty)

.PHONY: images
images: ## Build linux/amd64+arm64 FROM scratch images and OCI indexes; load the host's into Docker (PUSH=registry/prefix pushes)
	@test -n "$(IMAGE_CMDS)" || { echo "images: no cmd/*/main.go to build" >&2; exit 1; }
	@test -n "$(CA_BUNDLE)" || { echo "images: no CA bundle found; set CA_BUNDLE=/path/to/ca-certificates.crt" >&2; exit 1; }
	rm -rf $(IMAGES_CTX) && mkdir -p $(IMAGES_CTX)/bin
	@for p in $(IMAGE_PLATFORMS); do \
	  os=$${p%%/*}; arch=$${p#*/}; echo "building $(IMAGE_CMDS) for $$p"; \
	  GOOS=$$os GOARCH=$$arch CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMAGES_CTX)/bin/$${os}_$${arch}/ $(addprefix ./cmd/,$(IMAGE_CMDS)) || exit 1; \
	done
	$(GO) build -o $(IMAGES_CTX)/images ./hack/images
	$(IMAGES_CTX)/images --bin-dir $(IMAGES_CTX)/bin --out $(IMAGES_CTX)/oci \
	  --cmds $(subst $(space),$(comma),$(IMAGE_CMDS)) --platforms $(subst $(space),$(comma),$(strip $(IMAGE_PLATFORMS))) \
	  --ca-bundle $(CA_BUNDLE) --tag $(IMAGE_TAG) --version $(VERSION) \
	  $$(command -v docker >/dev/null && echo --load || echo "images: docker is not installed: not loading" >&2) \
	  $(if $(PUSH),--push $(PUSH))

# The Helm chart (deploy/helm/fleetscan), packaged with its files/ (the
# kustomize sources it renders) resolved into the archive.
CHART_SRC         := deploy/helm/fleetscan
CHART_VERSION     ?= $(shell sed -n 's/^version: *//p' $(CHART_SRC)/Chart.yaml)
CHART_APP_VERSION ?= $(IMAGE_TAG)
CHART_OUT         ?= $(BIN)/charts
REGISTRY          ?=

.PHONY: chart
chart: $(TOOLS)/helm ## Lint and package the Helm chart: bin/charts/fleetscan-<CHART_VERSION>.tgz (images tagged IMAGE_TAG)
	@mkdir -p $(CHART_OUT)
	$(TOOLS)/helm lint --strict $(CHART_SRC)
	$(TOOLS)/helm package $(CHART_SRC) --version $(CHART_VERSION) --app-version $(CHART_APP_VERSION) --destination $(CHART_OUT)

.PHONY: chart-push
chart-push: chart ## Push the chart as an OCI artifact: make chart-push REGISTRY=registry.example.com/charts
	@test -n "$(REGISTRY)" || { echo "chart-push: set REGISTRY=host[:port]/path; the chart goes to oci://REGISTRY/fleetscan" >&2; exit 4; }
	$(TOOLS)/helm push $(CHART_OUT)/fleetscan-$(CHART_VERSION).tgz oci://$(REGISTRY)

.PHONY: clean
clean: ## Remove build outputs (keeps .tools)
	rm -rf $(BIN)
