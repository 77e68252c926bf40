# Deich — build, test and run the operator. `make help` lists the targets.
#
# Every tool is built into bin/ from the Go module proxy at the version pinned below; nothing
# else needs to be installed. A second run reuses bin/.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

export GOTOOLCHAIN := local

GO ?= go
LOCALBIN ?= $(CURDIR)/bin

## Tool versions (pinned).
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
KUSTOMIZE_VERSION ?= v5.8.2

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)

# Control-plane binaries are built from the module in hack/tools, whose go.mod pins
# k8s.io/kubernetes and go.etcd.io/etcd/server/v3.
CONTROL_PLANE := $(LOCALBIN)/etcd $(LOCALBIN)/kube-apiserver
TOOLS_MOD := hack/tools/go.mod hack/tools/go.sum

GO_TEST_FLAGS ?= -count=1
TEST_TIMEOUT ?= 20m

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC under config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: fmt
fmt: ## Format the Go code.
	$(GO) fmt ./...

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate manifests $(KUSTOMIZE) ## Fail when generated files are stale, code is unformatted, or linters complain.
	@stale="$$(git status --porcelain -- api config | sed 's/^/  /')"; \
	if [ -n "$$stale" ]; then \
		echo "Generated files are stale or uncommitted; run 'make generate manifests' and commit:"; \
		echo "$$stale"; git --no-pager diff --stat -- api config; exit 1; fi
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(KUSTOMIZE) build config/default > /dev/null
	$(GOLANGCI_LINT_TARGET)

# verify runs the linter too, unless SKIP_LINT is set (useful for a quick local loop).
GOLANGCI_LINT_TARGET = $(if $(SKIP_LINT),@echo "lint skipped",$(MAKE) --no-print-directory lint)

.PHONY: test
test: verify test-all ## Verify, then run every test: unit tests and the two-site tests on real API servers.

.PHONY: test-all
test-all: $(CONTROL_PLANE) ## Run every test without verifying first.
	KUBEBUILDER_ASSETS=$(LOCALBIN) $(GO) test $(GO_TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...

.PHONY: test-unit
test-unit: ## Run only the tests that need no API server.
	$(GO) test $(GO_TEST_FLAGS) -short ./...

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/manager.
	$(GO) build -trimpath -o $(LOCALBIN)/manager .

.PHONY: run
run: ## Run a manager against the cluster of the current kubeconfig (SITE=<name>).
	$(GO) run . --site=$(SITE)

.PHONY: control-plane
control-plane: $(CONTROL_PLANE) ## Build etcd and kube-apiserver into bin/.

##@ Demo

DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: demo
demo: build $(CONTROL_PLANE) ## Start two local sites with a manager each and show the peers connected.
	DEMO_DIR=$(DEMO_DIR) LOCALBIN=$(LOCALBIN) hack/demo.sh up

.PHONY: demo-down
demo-down: ## Stop everything `make demo` started and remove its files.
	DEMO_DIR=$(DEMO_DIR) LOCALBIN=$(LOCALBIN) hack/demo.sh down

##@ Benchmarks

BENCH_TIMEOUT ?= 30m

.PHONY: bench
bench: $(CONTROL_PLANE) ## Run the benchmarks and print their tables (see docs/benchmarks.md).
	$(GO) test -run='^$$' -bench=. -benchmem $$($(GO) list ./... | grep -v /test/)
	KUBEBUILDER_ASSETS=$(LOCALBIN) $(GO) test -run='^$$' -bench=. -benchtime=1x -timeout=$(BENCH_TIMEOUT) ./test/bench/ ./test/failover/

##@ Tools

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(KUSTOMIZE) $(CONTROL_PLANE) ## Build every tool into bin/.

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $@

$(GOLANGCI_LINT): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/golangci-lint $@

$(KUSTOMIZE): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(LOCALBIN)/kustomize $@

# Binaries are built to a temporary name and then moved, so a running control plane keeps its
# binary while a new one is built.
$(LOCALBIN)/etcd: $(TOOLS_MOD) hack/tools/etcd/main.go | $(LOCALBIN)
	cd hack/tools && $(GO) build -trimpath -ldflags "-s -w" -o $@.tmp ./etcd
	mv $@.tmp $@

$(LOCALBIN)/kube-apiserver: $(TOOLS_MOD) | $(LOCALBIN)
	cd hack/tools && $(GO) build -trimpath -ldflags "-s -w $$(./version-ldflags.sh)" -o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

.PHONY: clean
clean: demo-down ## Stop the demo and remove bin/.
	rm -rf $(LOCALBIN)
