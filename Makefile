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
# Generators and tools at the exact versions hack/tools.sh pins, installed on first use into
# $(MILLRACE_CACHE)/tools, so that generated files are the same on every machine.
CONTROLLER_GEN ?= hack/tools.sh exec controller-gen
KUSTOMIZE ?= hack/tools.sh exec kustomize

GO_TEST_FLAGS ?= -timeout 30m

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code and the function/state protocol stubs.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./apis/...
	hack/gen-proto.sh

.PHONY: manifests
manifests: ## Generate the CRD and RBAC manifests from the API types and markers.
	$(CONTROLLER_GEN) crd paths=./apis/streaming/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=millrace-manager-role paths=./controllers/... output:rbac:artifacts:config=config/rbac

.PHONY: fmt
fmt: ## Run gofmt on the tree.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...
	go vet -tags e2e,cluster ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, etcd and kube-controller-manager into the cache (first run: minutes); prints the folder.
	@hack/envtest-assets.sh

.PHONY: kafka-start
kafka-start: ## Start a real Apache Kafka broker (KRaft) on loopback; prints its address.
	@hack/kafka.sh start

.PHONY: kafka-stop
kafka-stop: ## Stop the broker kafka-start started.
	@hack/kafka.sh stop

.PHONY: run-wordcount
run-wordcount: ## Build millrace and the executor runtime into bin/, run the word-count sample locally on an embedded Kafka and print the counts.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/ ./cmd/millrace ./cmd/millrace-io ./cmd/millrace-state ./cmd/wordcount-split ./cmd/wordcount-sum
	$(LOCALBIN)/millrace run -f config/samples/streaming_v1alpha1_pipeline_wordcount.yaml --bin-dir $(LOCALBIN) --input lines=config/samples/wordcount-input.txt --until-idle --timeout 5m

.PHONY: bench-peer
bench-peer: ## The peer benchmark: Kafka Streams against Millrace as deployed, on one real broker (KAFKA_PORT); prints the ratios. ARGS= passes flags (e.g. ARGS=--smoke).
	hack/peer-bench.sh $(ARGS)

.PHONY: bench-peer-smoke
bench-peer-smoke: ## The peer benchmark on 4,000 records: builds both sides and verifies every output (about 90 s warm).
	hack/peer-bench.sh --smoke

.PHONY: test
test: ## Run every test: unit, golden, fuzz seeds, envtest suites, e2e scenarios, kfake and real-broker tiers.
	hack/test.sh -tags e2e $(GO_TEST_FLAGS) ./...

.PHONY: test-e2e
test-e2e: ## Run the cluster tier: a real single-node Kubernetes (hack/cluster.sh), real KEDA, a real broker, the operator deployed; or the cluster of KUBECONFIG (see docs/e2e.md).
	hack/e2e.sh

.PHONY: cluster-up
cluster-up: ## Boot the single-node cluster of the e2e tier (first run builds its binaries); prints the KUBECONFIG.
	@hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the single-node cluster and the e2e broker, restoring the host.
	-@KAFKA_PORT=$${MILLRACE_E2E_KAFKA_PORT:-19292} hack/kafka.sh stop
	@hack/cluster.sh down

.PHONY: test-update-golden
test-update-golden: ## Rewrite the golden files from the current render output.
	go test ./controllers/render/... ./cmd/... -update

.PHONY: build
build: ## Build every binary into bin/.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/ ./cmd/...

.PHONY: verify
verify: generate manifests bundle api-docs fmt vet ## Regenerate everything, then fail if the tree differs from what is committed.
	go mod tidy
	@if [ -n "$$(git status --porcelain --untracked-files=all -- . ':!bin')" ]; then \
		echo "make verify: generated files or formatting are out of date:"; git status --porcelain --untracked-files=all -- . ':!bin'; git diff --stat; exit 1; \
	fi

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: tools
tools: ## Install every pinned generator and tool into $(MILLRACE_CACHE)/tools (hack/tools.sh --list shows them).
	@for t in $$(hack/tools.sh --list | cut -d' ' -f1); do hack/tools.sh "$$t" >/dev/null; done

##@ Deployment

# The OLM bundle: package, channels and image.
BUNDLE_PACKAGE ?= millrace
BUNDLE_CHANNELS ?= candidate
BUNDLE_DEFAULT_CHANNEL ?= candidate
BUNDLE_REPLACES ?=
BUNDLE_IMG ?= $(IMAGE_REGISTRY)/millrace-operator-bundle:v$(VERSION)
# Images of the example functions: $(EXAMPLE_IMG_PREFIX)<binary>:v$(VERSION).
EXAMPLE_IMG_PREFIX ?= $(IMAGE_REGISTRY)/millrace-example-
# The Python SDK's example functions (word count split and sum, identity), one image.
PY_EXAMPLE_IMG ?= $(EXAMPLE_IMG_PREFIX)wordcount-py:v$(VERSION)
# One image per binary, each a stage of the Dockerfile (hack/bundlegen's TestDockerfile checks
# that this list and the stages agree).
IMAGE_BINARIES ?= manager millrace-io millrace-state identity wordcount-split wordcount-sum
CONTAINER_TOOL ?= docker
PLATFORMS ?= linux/amd64,linux/arm64
GOARCH ?= $(shell go env GOARCH)

# image_of maps a binary to its image name.
image_of = $(if $(filter manager,$(1)),$(IMG),$(if $(filter millrace-io,$(1)),$(IO_SIDECAR_IMG),$(if $(filter millrace-state,$(1)),$(STATE_SIDECAR_IMG),$(EXAMPLE_IMG_PREFIX)$(1):v$(VERSION))))

.PHONY: bundle
bundle: ## Generate bundle/ and bundle.Dockerfile (OLM) from config/; never edit bundle/ by hand.
	go run ./hack/bundlegen -version $(VERSION) -image $(IMG) \
		-io-sidecar-image $(IO_SIDECAR_IMG) -state-sidecar-image $(STATE_SIDECAR_IMG) \
		-package $(BUNDLE_PACKAGE) -channels $(BUNDLE_CHANNELS) -default-channel $(BUNDLE_DEFAULT_CHANNEL) \
		-replaces "$(BUNDLE_REPLACES)"

.PHONY: bundle-validate
bundle-validate: ## Validate bundle/ with the operator-framework validators (OperatorHub, good practices) and check it is up to date.
	go test ./hack/bundlegen/ -run 'TestBundle|TestValidators|TestGenerate' -count=1

.PHONY: bundle-build
bundle-build: ## Build the bundle image (needs a container engine).
	$(CONTAINER_TOOL) build -f bundle.Dockerfile -t $(BUNDLE_IMG) .

.PHONY: bundle-push
bundle-push: ## Push the bundle image.
	$(CONTAINER_TOOL) push $(BUNDLE_IMG)

.PHONY: docker-binaries
docker-binaries: ## Build the images' static binaries into bin/linux/$(GOARCH)/ (GOARCH=arm64 for the other platform).
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) go build -trimpath -ldflags='-s -w' -o $(LOCALBIN)/linux/$(GOARCH)/ $(addprefix ./cmd/,$(IMAGE_BINARIES))

.PHONY: images
images: docker-binaries ## Build one OCI image per binary without a container engine (from the Dockerfile's stages), and the Python example functions' image (Debian's python3.11, hack/python.sh image), into bin/images; load them into hack/cluster.sh's node when it is up.
	go run ./hack/imagebuild -bin-dir $(LOCALBIN)/linux/$(GOARCH) -arch $(GOARCH) -out $(LOCALBIN)/images $(foreach b,$(IMAGE_BINARIES),$(b)=$(call image_of,$(b)))
	hack/python.sh image $(LOCALBIN)/images/wordcount-py.tar $(PY_EXAMPLE_IMG)
	@if hack/cluster.sh status >/dev/null 2>&1; then hack/cluster.sh load $(foreach b,$(IMAGE_BINARIES) wordcount-py,$(LOCALBIN)/images/$(b).tar); fi

.PHONY: docker-build
docker-build: docker-binaries ## Build one image per binary (needs a container engine): operator, sidecars, example functions.
	$(foreach b,$(IMAGE_BINARIES),$(CONTAINER_TOOL) build --build-arg BINARY=$(b) --build-arg TARGETARCH=$(GOARCH) -t $(call image_of,$(b)) . &&) true

.PHONY: docker-push
docker-push: ## Push the images docker-build built.
	$(foreach b,$(IMAGE_BINARIES),$(CONTAINER_TOOL) push $(call image_of,$(b)) &&) true

.PHONY: docker-buildx
docker-buildx: ## Build and push multi-platform images for $(PLATFORMS) (needs docker buildx).
	$(foreach p,$(subst $(comma), ,$(PLATFORMS)),$(MAKE) docker-binaries GOARCH=$(lastword $(subst /, ,$(p))) &&) true
	$(foreach b,$(IMAGE_BINARIES),$(CONTAINER_TOOL) buildx build --push --platform $(PLATFORMS) --build-arg BINARY=$(b) -t $(call image_of,$(b)) . &&) true

comma := ,

.PHONY: kustomize
kustomize: ## Install kustomize into $(MILLRACE_CACHE)/tools; prints its path.
	@hack/tools.sh kustomize

# deploy builds config/default with the images of this Makefile's variables, through an overlay
# outside the tree, so that the tree stays as committed.
.PHONY: deploy
deploy: ## Install the CRD and the operator into the cluster of the current kubeconfig (images from IMG, IO_SIDECAR_IMG, STATE_SIDECAR_IMG).
	@overlay="$$(mktemp -d)"; trap 'rm -rf "$$overlay"' EXIT; \
	hack/bundle-deploy-overlay.sh "$$overlay" "$(CURDIR)/config/default" "$(IMG)" "$(IO_SIDECAR_IMG)" "$(STATE_SIDECAR_IMG)"; \
	$(KUSTOMIZE) build "$$overlay" | kubectl apply --server-side --field-manager=millrace-deploy -f -

.PHONY: deploy-monitoring
deploy-monitoring: ## Install the operator's ServiceMonitor and alerts (Prometheus Operator) and the Grafana dashboard.
	$(KUSTOMIZE) build config/prometheus | kubectl apply --server-side --field-manager=millrace-deploy -f -
	$(KUSTOMIZE) build config/grafana | kubectl apply --server-side --field-manager=millrace-deploy -f -

.PHONY: undeploy
undeploy: ## Remove the operator, its monitoring and the CRD (deleting every Pipeline) from the current cluster.
	$(KUSTOMIZE) build config/grafana | kubectl delete --ignore-not-found -f -
	-$(KUSTOMIZE) build config/prometheus | kubectl delete --ignore-not-found -f -
	$(KUSTOMIZE) build config/default | kubectl delete --ignore-not-found -f -

.PHONY: api-docs
api-docs: ## Generate docs/api-reference.md from the API types and docs/reconfiguration.md from the reconfiguration contract.
	go run ./hack/apidocs -out docs/api-reference.md ./apis/streaming/v1alpha1
	go run ./hack/reconfigdocs -out docs/reconfiguration.md
