# stateful-migration — see README.md for the two entry points (`make demo`, `make test`).
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

IMAGE ?= stateful-migration:dev
BIN_DIR ?= bin
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION_PKG := github.com/stateful-migration/stateful-migration/pkg/version
CONTROLLER_GEN := $(GO) tool controller-gen

.PHONY: all
all: build

##@ Build
.PHONY: build
build: ## Build the single binary (manager, agent, mover subcommands).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X $(VERSION_PKG).Version=$(VERSION)" -o $(BIN_DIR)/stateful-migration ./cmd/stateful-migration

.PHONY: image
image: ## Build the container image with docker (pulls a base image).
	docker build -t $(IMAGE) .

.PHONY: image-offline
image-offline: build ## Build the image from the local binary only, for machines without a registry.
	hack/image-offline.sh $(IMAGE) $(BIN_DIR)/stateful-migration

##@ Code generation
.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./pkg/apis/..."

.PHONY: manifests
manifests: ## Generate CRDs: hub CRDs into manifests/, spoke CRDs into the agent templates.
	$(CONTROLLER_GEN) crd paths="./pkg/apis/migration/..." output:crd:artifacts:config=manifests/crds
	@if [ -d pkg/apis/replication ]; then \
	  $(CONTROLLER_GEN) crd paths="./pkg/apis/replication/..." output:crd:artifacts:config=addon/manifests/templates/crds; \
	fi

.PHONY: verify
verify: generate manifests ## Fail when generated files, gofmt or go vet are not clean.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@git diff --exit-code -- pkg/apis manifests addon || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }

##@ Test
.PHONY: test
test: verify test-unit test-alerts test-integration ## Everything CI runs before e2e.

.PHONY: test-unit
test-unit: ## Unit tests (no cluster).
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /test/integration -e /e2e)

.PHONY: test-alerts
test-alerts: ## The shipped alert rules against promtool unit tests (promtool from Debian's package, cached).
	hack/test-alerts.sh

.PHONY: test-integration
test-integration: ## Integration tests on a real kube-apiserver and etcd (envtest).
	assets=$$(hack/envtest-assets.sh); export KUBEBUILDER_ASSETS=$$assets; \
	$(GO) test -p 1 -count=1 -timeout 30m ./test/integration/... -ginkgo.v

.PHONY: test-e2e
test-e2e: ## hub + cluster1 + cluster2 on kind with OCM, then the e2e/ suite (E2E_KEEP=1 keeps the clusters).
	hack/e2e/run.sh

.PHONY: bench-e2e
bench-e2e: ## T_copy and T_down on kind with 0.5, 2 and 8 GiB on the volume (E2E_DOWNTIME_GIB; ~30 min; docs/e2e.md).
	E2E_LABELS=bench hack/e2e/run.sh

.PHONY: bench-mover
bench-mover: ## Mover throughput against rsync and a raw pipe, on the same data (docs/mover.md).
	hack/bench-mover.sh

.PHONY: bench-hub
bench-hub: ## The hub with 100, 500 and 1,000 simulated clusters and 10, 50, 100 migrations at once (envtest; FLEETS, HUB_ARGS; docs/scale.md).
	hack/bench-hub.sh

##@ Deploy
.PHONY: deploy
deploy: ## Install the hub side (CRDs, RBAC, ClusterManagementAddOn, manager) into the current kubectl context.
	kubectl apply -k manifests/

.PHONY: undeploy
undeploy:
	kubectl delete --ignore-not-found -k manifests/

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Demo
.PHONY: demo
demo: ## Hub + two kind clusters with OCM; a stateful app moved by a Placement edit; timings printed.
	hack/e2e/demo.sh

.PHONY: demo-clean
demo-clean: ## Delete the demo's clusters (caches are kept).
	hack/e2e/fleet.sh down

##@ E2E building blocks (kind; see docs/e2e.md)
E2E_CLUSTER ?= e2e

.PHONY: e2e-docker
e2e-docker: ## Ensure a Docker engine that runs privileged containers (detects host quirks).
	hack/e2e/docker.sh

.PHONY: e2e-tools
e2e-tools: ## Install kind, kubectl, clusteradm into the e2e cache.
	hack/e2e/tools.sh

.PHONY: e2e-node-image
e2e-node-image: e2e-docker ## kindest/node if it can be pulled, else build a node image locally.
	hack/e2e/node-image.sh

.PHONY: e2e-cluster
e2e-cluster: ## Create kind cluster $(E2E_CLUSTER), wait Ready, run a PVC smoke pod.
	hack/e2e/cluster.sh up $(E2E_CLUSTER)
	hack/e2e/cluster.sh smoke $(E2E_CLUSTER)

.PHONY: e2e-fleet
e2e-fleet: ## Bring up (or reuse) hub, cluster1, cluster2 with OCM and the addon; keeps them.
	hack/e2e/fleet.sh up

.PHONY: e2e-fleet-clean
e2e-fleet-clean: ## Delete hub, cluster1, cluster2 (caches are kept).
	hack/e2e/fleet.sh down

.PHONY: e2e-clean
e2e-clean: ## Delete kind cluster $(E2E_CLUSTER) (caches are kept).
	hack/e2e/cluster.sh down $(E2E_CLUSTER)
