# trueup — build, test and demo. `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

BIN        := $(CURDIR)/bin
K8S_BIN    := $(BIN)/k8s
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GO_TEST    ?= go test
TEST_FLAGS ?= -race -count=1 -timeout 20m
IMAGE      ?= ghcr.io/trueup-dev/trueup:$(VERSION)

# Tests find the control plane through these (envtest reads KUBEBUILDER_ASSETS).
export KUBEBUILDER_ASSETS := $(K8S_BIN)
export TRUEUP_LOCALCLUSTER := $(BIN)/localcluster

.PHONY: help
help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/trueup
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/trueup ./cmd/trueup

.PHONY: testbin
testbin: ## build the local control plane (etcd, kube-apiserver, ...) into bin/k8s, once; install prometheus and chromium where apt can
	tools/build-testbin.sh $(K8S_BIN)
	tools/install-prometheus.sh
	tools/apt-install.sh chromium

.PHONY: test
test: testbin ## run every test against a real local control plane and git server
	$(GO_TEST) $(TEST_FLAGS) ./...
	cd tools && $(GO_TEST) -count=1 -timeout 20m ./...

.PHONY: bench
bench: build testbin ## trueup, kubectl and Flux's ssa side by side on the local control plane; writes docs/benchmarks.md
	cd tools && go run ./cmd/bench -trueup $(BIN)/trueup -assets $(K8S_BIN) -out $(CURDIR)/docs/benchmarks.md $(BENCH_FLAGS)

.PHONY: microbench
microbench: testbin ## the Go micro-benchmarks, written to bench.txt
	$(GO_TEST) -run '^$$' -bench . -benchmem -count 5 ./... | tee bench.txt

.PHONY: fuzz
fuzz: ## run each fuzz target briefly (FUZZTIME=20000x inputs, or a duration)
	hack/fuzz.sh $${FUZZTIME:-20000x}

.PHONY: vulncheck
vulncheck: ## govulncheck over the product's module, against golang.org/x/vulndb from the module proxy
	hack/vulncheck.sh

.PHONY: lint
lint: ## gofmt and go vet, product and tools
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || { echo 'run gofmt -w on the files above'; exit 1; }
	go vet ./...
	cd tools && go vet ./...

.PHONY: docs
docs: ## regenerate docs/metrics.md, docs/config.md and the self-hosted example's manifest
	cd tools && go test ./ship -run 'Fresh' -count=1 -update

.PHONY: demo
demo: build testbin ## start a local control plane and run trueup on the examples repo
	hack/demo.sh

.PHONY: image
image: ## build the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

.PHONY: clean
clean: ## remove build output (keeps bin/k8s, which is slow to rebuild)
	rm -f $(BIN)/trueup bench.txt
