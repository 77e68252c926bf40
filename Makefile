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
CRD_REF_DOCS_VERSION ?= v0.3.0
HELM_VERSION ?= v4.3.1
KWOK_VERSION ?= v0.8.0
# promtool is built from hack/tools/promtool, a module of its own whose go.mod pins
# github.com/prometheus/prometheus at this version; the rule refuses to build when the two differ.
PROMTOOL_VERSION ?= v0.316.0

CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
CRD_REF_DOCS ?= $(LOCALBIN)/crd-ref-docs-$(CRD_REF_DOCS_VERSION)
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
KWOK ?= $(LOCALBIN)/kwok-$(KWOK_VERSION)
PROMTOOL ?= $(LOCALBIN)/promtool-$(PROMTOOL_VERSION)

# Control-plane binaries are built from the module in hack/tools, whose go.mod pins
# k8s.io/kubernetes and go.etcd.io/etcd/server/v3.
CONTROL_PLANE := $(LOCALBIN)/etcd $(LOCALBIN)/kube-apiserver
# kubectl is built from the same pinned k8s.io/kubernetes, so it matches the API servers and
# no kubectl on PATH (often an old distribution package) is ever used. Scripts and tests take
# it from $KUBECTL.
KUBECTL ?= $(LOCALBIN)/kubectl
export KUBECTL
TOOLS_MOD := hack/tools/go.mod hack/tools/go.sum
# The demo's sites also run kube-controller-manager and kube-scheduler (from hack/tools) and
# kwok, which keeps a fake node Ready and makes the pods scheduled to it Ready.
# The demo shows the sites with kubectl and builds config/ and config/witness with kustomize.
DEMO_TOOLS := $(LOCALBIN)/kube-controller-manager $(LOCALBIN)/kube-scheduler $(KWOK) $(KUBECTL) $(KUSTOMIZE)

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
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC under config/ and copy them into the Helm chart.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(MAKE) --no-print-directory chart-manifests

.PHONY: api-docs
api-docs: $(CRD_REF_DOCS) ## Generate the API reference docs/reference/api.md from the API types.
	$(CRD_REF_DOCS) --source-path=api/v1alpha1 --renderer=markdown --config=hack/api-docs/config.yaml \
		--templates-dir=hack/api-docs/templates --output-path=docs/reference/api.md --log-level=warn

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
verify: generate manifests api-docs $(KUSTOMIZE) $(HELM) ## Fail when generated files are stale, code is unformatted, or linters complain.
	@stale="$$(git status --porcelain -- api config charts docs/reference | sed 's/^/  /')"; \
	if [ -n "$$stale" ]; then \
		echo "Generated files are stale or uncommitted; run 'make generate manifests api-docs' and commit:"; \
		echo "$$stale"; git --no-pager diff --stat -- api config charts docs/reference; exit 1; fi
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(KUSTOMIZE) build config/default > /dev/null
	$(KUSTOMIZE) build config/peer > /dev/null
	$(KUSTOMIZE) build --enable-helm --helm-command $(HELM) config/peer/namespaced > /dev/null
	$(KUSTOMIZE) build config/witness > /dev/null
	$(MAKE) --no-print-directory helm-lint
	$(GOLANGCI_LINT_TARGET)

# verify runs the linter too, unless SKIP_LINT is set (useful for a quick local loop).
GOLANGCI_LINT_TARGET = $(if $(SKIP_LINT),@echo "lint skipped",$(MAKE) --no-print-directory lint)

.PHONY: test
test: verify test-all ## Verify, then run every test: unit tests and the two-site tests on real API servers.

.PHONY: test-all
test-all: $(CONTROL_PLANE) $(DEMO_TOOLS) $(HELM) $(KUSTOMIZE) $(PROMTOOL) ## Run every test without verifying first.
	KUBEBUILDER_ASSETS=$(LOCALBIN) HELM=$(HELM) PROMTOOL=$(PROMTOOL) KUSTOMIZE=$(KUSTOMIZE) KWOK=$(KWOK) KUBECTL=$(KUBECTL) $(GO) test $(GO_TEST_FLAGS) -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/test/scale$$')
	# test/scale loads the machine with a catalogue of services: it runs after the
	# timing-sensitive fault tests, not beside them.
	KUBEBUILDER_ASSETS=$(LOCALBIN) $(GO) test $(GO_TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./test/scale/

.PHONY: test-unit
test-unit: ## Run only the tests that need no API server.
	$(GO) test $(GO_TEST_FLAGS) -short ./...

##@ Build

.PHONY: build
build: ## Build the manager into bin/manager and the kubectl plugin into bin/kubectl-deich.
	$(GO) build -trimpath -o $(LOCALBIN)/manager .
	$(GO) build -trimpath -o $(LOCALBIN)/kubectl-deich ./cmd/kubectl-deich

# The kubectl plugin's release archives, one per platform, with their SHA-256 sums: what a krew
# index entry (hack/krew/deich.yaml) points at.
DIST ?= $(CURDIR)/dist
RELEASE_TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64

.PHONY: dist
dist: ## Build the kubectl-deich release archives for every platform into dist/ (RELEASE_TAG names them).
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(PLUGIN_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=""; [ "$$os" = windows ] && ext=.exe; \
		dir=$(DIST)/kubectl-deich_$(RELEASE_TAG)_$${os}_$${arch}; mkdir -p $$dir; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w" -o $$dir/kubectl-deich$$ext ./cmd/kubectl-deich; \
		tar -C $$dir -czf $$dir.tar.gz kubectl-deich$$ext; rm -rf $$dir; \
		echo "$$dir.tar.gz"; \
	done
	@cd $(DIST) && sha256sum *.tar.gz > SHA256SUMS && cat SHA256SUMS

.PHONY: run
run: ## Run a manager against the cluster of the current kubeconfig (SITE=<name>).
	$(GO) run . --site=$(SITE)

.PHONY: control-plane
control-plane: $(CONTROL_PLANE) ## Build etcd and kube-apiserver into bin/.

##@ Helm chart

CHART := charts/deich

.PHONY: chart-manifests
chart-manifests: ## Copy the generated CRDs and manager RBAC, and the other files the chart shares with config/, into the chart (part of `make manifests`).
	rm -f $(CHART)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART)/crds/
	cp config/rbac/role.yaml $(CHART)/files/role.yaml
	cp config/peer/namespaced/charts/deich-peer-access/templates/peer-access.yaml $(CHART)/templates/peer-access.yaml
	cp config/admission/switchover_requester.yaml $(CHART)/files/switchover_requester.yaml

.PHONY: helm-lint
helm-lint: $(HELM) ## Lint the Helm chart.
	$(HELM) lint --strict $(CHART) --set site=sh-kiel
	$(HELM) lint --strict $(CHART) -f test/chart/testdata/values-full.yaml
	$(HELM) lint --strict $(CHART) --set site=sh-kiel --set peerAccess.enabled=true --set 'peerAccess.namespaces={buergerkonto,kfz-zulassung}'

.PHONY: helm
helm: $(HELM) ## Build helm into bin/.

##@ Demo

DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: demo
demo: build $(CONTROL_PLANE) $(DEMO_TOOLS) ## Start sh-kiel, mv-schwerin and the witness hh-hamburg, share a service with its database and hostname, lose each partner in turn, move it home; leaves the sites running.
	DEMO_DIR=$(DEMO_DIR) LOCALBIN=$(LOCALBIN) KWOK=$(KWOK) KUBECTL=$(KUBECTL) KUSTOMIZE=$(KUSTOMIZE) hack/demo.sh up

.PHONY: demo-down
demo-down: ## Stop everything `make demo` started and remove its files.
	DEMO_DIR=$(DEMO_DIR) LOCALBIN=$(LOCALBIN) KWOK=$(KWOK) KUBECTL=$(KUBECTL) KUSTOMIZE=$(KUSTOMIZE) hack/demo.sh down

.PHONY: demo-tools
demo-tools: $(CONTROL_PLANE) $(DEMO_TOOLS) ## Build what the demo needs besides the manager (control planes, kwok, kubectl, kustomize) into bin/.

.PHONY: kubectl
kubectl: $(KUBECTL) ## Build kubectl, at the pinned Kubernetes version, into bin/.

##@ Benchmarks

BENCH_TIMEOUT ?= 30m

.PHONY: bench
bench: $(CONTROL_PLANE) ## Run the benchmarks and print their tables (see docs/benchmarks.md).
	$(GO) test -run='^$$' -bench=. -benchmem $$($(GO) list ./... | grep -v /test/)
	KUBEBUILDER_ASSETS=$(LOCALBIN) $(GO) test -run='^$$' -bench=. -benchtime=1x -timeout=$(BENCH_TIMEOUT) ./test/bench/ ./test/failover/ ./test/quorum/

SOAK_DURATION ?= 30m
SOAK_TIMEOUT ?= 60m

.PHONY: soak
soak: $(CONTROL_PLANE) ## Inject random faults of the fault matrix for SOAK_DURATION (default 30m) and report split brain and gaps (see docs/failover.md).
	KUBEBUILDER_ASSETS=$(LOCALBIN) $(GO) test -tags soak -run='^TestSoak$$' -v -count=1 -timeout=$(SOAK_TIMEOUT) ./test/quorum/ -args -soak=$(SOAK_DURATION) $(if $(SOAK_SEED),-soak-seed=$(SOAK_SEED))

##@ Tools

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(KUSTOMIZE) $(CRD_REF_DOCS) $(HELM) $(PROMTOOL) $(CONTROL_PLANE) $(DEMO_TOOLS) ## Build every tool into bin/.

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

$(CRD_REF_DOCS): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install github.com/elastic/crd-ref-docs@$(CRD_REF_DOCS_VERSION)
	mv $(LOCALBIN)/crd-ref-docs $@

# helm's k8s.io dependencies differ from Deich's, so it is installed at its own pinned module
# version rather than added to go.mod. The ldflag sets the version `helm version` reports.
$(HELM): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)" helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/helm $@

# Binaries are built to a temporary name and then moved, so a running control plane keeps its
# binary while a new one is built.
$(LOCALBIN)/etcd: $(TOOLS_MOD) hack/tools/etcd/main.go | $(LOCALBIN)
	cd hack/tools && $(GO) build -trimpath -ldflags "-s -w" -o $@.tmp ./etcd
	mv $@.tmp $@

$(LOCALBIN)/kube-apiserver: $(TOOLS_MOD) | $(LOCALBIN)
	cd hack/tools && $(GO) build -trimpath -ldflags "-s -w $$(./version-ldflags.sh)" -o $@.tmp k8s.io/kubernetes/cmd/kube-apiserver
	mv $@.tmp $@

$(LOCALBIN)/kube-controller-manager: $(TOOLS_MOD) | $(LOCALBIN)
	cd hack/tools && $(GO) build -trimpath -ldflags "-s -w $$(./version-ldflags.sh)" -o $@.tmp k8s.io/kubernetes/cmd/kube-controller-manager
	mv $@.tmp $@

$(LOCALBIN)/kube-scheduler: $(TOOLS_MOD) | $(LOCALBIN)
	cd hack/tools && $(GO) build -trimpath -ldflags "-s -w $$(./version-ldflags.sh)" -o $@.tmp k8s.io/kubernetes/cmd/kube-scheduler
	mv $@.tmp $@

$(LOCALBIN)/kubectl: $(TOOLS_MOD) | $(LOCALBIN)
	cd hack/tools && $(GO) build -trimpath -ldflags "-s -w $$(./version-ldflags.sh)" -o $@.tmp k8s.io/kubernetes/cmd/kubectl
	mv $@.tmp $@

# promtool checks and unit-tests the chart's alerting rules (test/chart). The ldflag sets the
# version `promtool --version` reports: the module version (v0.316.0 is Prometheus 3.16.0).
$(PROMTOOL): hack/tools/promtool/go.mod hack/tools/promtool/go.sum | $(LOCALBIN)
	@pinned="$$(cd hack/tools/promtool && $(GO) list -m -f '{{.Version}}' github.com/prometheus/prometheus)"; \
	if [ "$$pinned" != "$(PROMTOOL_VERSION)" ]; then \
		echo "hack/tools/promtool/go.mod pins github.com/prometheus/prometheus $$pinned, but PROMTOOL_VERSION is $(PROMTOOL_VERSION)"; exit 1; fi
	cd hack/tools/promtool && $(GO) build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$(PROMTOOL_VERSION)" -o $@.tmp github.com/prometheus/prometheus/cmd/promtool
	mv $@.tmp $@

# kwok's k8s.io dependencies differ from k8s.io/kubernetes', so, like helm, it is installed at
# its own pinned module version.
$(KWOK): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) $(GO) install -trimpath -ldflags "-s -w" sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
	mv $(LOCALBIN)/kwok $@

.PHONY: clean
clean: demo-down ## Stop the demo and remove bin/.
	rm -rf $(LOCALBIN)
