# Millrace: a Kubernetes-native stream processing platform.
#
# Tools the targets need are installed by the project itself, outside the clone where they are
# large (envtest binaries, the Kafka broker) so a fresh clone on the same machine reuses them.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

MILLRACE_CACHE ?= $(HOME)/.cache/millrace
export MILLRACE_CACHE

# Images the operator deploys, and the bundle references.
VERSION ?= 0.1.0
IMAGE_REGISTRY ?= ghcr.io/millrace-dev
IMG ?= $(IMAGE_REGISTRY)/millrace-operator:v$(VERSION)
IO_SIDECAR_IMG ?= $(IMAGE_REGISTRY)/millrace-io:v$(VERSION)
STATE_SIDECAR_IMG ?= $(IMAGE_REGISTRY)/millrace-state:v$(VERSION)

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE_VERSION ?= v5.7.1
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)

GO_TEST_FLAGS ?= -timeout 30m

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code and the function/state protocol stubs.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./apis/...
	hack/gen-proto.sh

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests from the API types and markers.
	$(CONTROLLER_GEN) crd paths=./apis/streaming/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=millrace-manager-role paths=./controllers/... output:rbac:artifacts:config=config/rbac

.PHONY: fmt
fmt: ## Run gofmt on the tree.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, etcd and kube-controller-manager into the cache (first run: minutes); prints the folder.
	@hack/envtest-assets.sh

.PHONY: kafka-start
kafka-start: ## Start a real Apache Kafka broker (KRaft) on loopback; prints its address.
	@hack/kafka.sh start

.PHONY: kafka-stop
kafka-stop: ## Stop the broker kafka-start started.
	@hack/kafka.sh stop

.PHONY: test
test: ## Run every test: unit, golden, fuzz seeds, envtest suites, kfake and real-broker tiers.
	hack/test.sh $(GO_TEST_FLAGS) ./...

.PHONY: test-update-golden
test-update-golden: ## Rewrite the golden files from the current render output.
	go test ./controllers/render/... ./cmd/... -update

.PHONY: build
build: ## Build every binary into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/ ./cmd/...

.PHONY: verify
verify: generate manifests fmt vet ## Regenerate everything, then fail if the tree differs from what is committed.
	go mod tidy
	@if [ -n "$$(git status --porcelain --untracked-files=all -- . ':!bin')" ]; then \
		echo "make verify: generated files or formatting are out of date:"; git status --porcelain --untracked-files=all -- . ':!bin'; git diff --stat; exit 1; \
	fi

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)
