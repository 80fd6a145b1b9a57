# Resource Manager — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin
MODULES   := $(shell sed -n 's|^\t\./\(.*\)$$|\1|p' go.work)
# Modules deliberately left out of go.work (and so out of vet, test and the
# tidy check below): tools/kubeserver requires k8s.io/kubernetes to build
# kube-apiserver for make test-kube; in the workspace it would raise every
# module's client-go/apimachinery to what k8s.io/kubernetes wants.
NOT_IN_WORKSPACE := tools/kubeserver
NOT_IN_WORKSPACE_FIND := $(foreach m,$(NOT_IN_WORKSPACE),-not -path './$(m)/*')
PKGS      := $(addsuffix /...,$(addprefix ./,$(MODULES)))
TESTFLAGS ?= -race -count=1 -timeout 15m
# The version every binary reports (--version, the log line it starts with, GET /version,
# the metric rm_build_info): the tree's `git describe`, stamped in at link time.
# Read once, so that every binary of one make run carries the same one.
ifeq ($(origin VERSION),undefined)
VERSION   := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
endif
LDFLAGS   := -X github.com/avxrm/rm/pkg/events/buildinfo.version=$(VERSION)
FUZZTIME  ?= 10s

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build build-avxrm
build-avxrm:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/avxrm ./cmd/avxrm

build: build-avxrm ## build avxrm and the per-service binaries into bin/
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./,$(addsuffix /...,$(wildcard services/*/cmd)))

.PHONY: run
run: build-avxrm ## build, then run the whole system locally on embedded NATS and FerretDB (avxrm up)
	./$(BIN)/avxrm up

.PHONY: test-deps
test-deps: ## install what the tests need (headless chromium for the docs page test)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v curl >/dev/null 2>&1 || { \
	  echo "installing curl (Debian package): the auth end-to-end test's worker uploads with it"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }
	@docker info >/dev/null 2>&1 || { echo "the Docker Engine is not reachable; the docker driver tests need it"; exit 1; }

.PHONY: vet vet-tags
vet: vet-tags ## go vet every module, and the files behind build tags
	$(GO) vet $(PKGS)
vet-tags: ## go vet the files behind the build tags kube, storefault and estimate
	$(GO) vet $(VETFLAGS) -tags kube ./services/launcher/internal/driver/kubernetes/... ./cmd/avxrm/internal/up/
	$(GO) vet $(VETFLAGS) -tags storefault ./pkg/embedded/ferretembed/
	$(GO) vet $(VETFLAGS) -tags estimate ./cmd/avxrm/internal/up/

.PHONY: test
# RACE is -race when the tests run with it (TESTFLAGS), for everything else make test compiles.
RACE := $(filter -race,$(TESTFLAGS))
test: test-deps verify-go-workspace verify-mod-tidy ## install test needs, check go.work and every go.mod is tidy, then run every module's tests with -race and every vet check, and a short fuzz run
	@# The tree is compiled once, with -race: the avxrm binary the clients' tests run
	@# (the CLI's, the Go SDK's, the Python package's; AVXRM_BIN) and the vet of the files
	@# behind build tags reuse the -race tests' compile instead of one without -race
	@# (make vet-tags without -race, which made it, took 9m33s on an empty build cache on a
	@# slow machine: docs/testing.md). The binary is built first, alone, so
	@# that the three test packages that run it do not each compile it beside the tests.
	$(GO) build $(RACE) -ldflags '$(LDFLAGS)' -o $(BIN)/avxrm-test ./cmd/avxrm
	@$(MAKE) --no-print-directory vet-tags VETFLAGS=$(RACE)
	@# The tests run every check of go vet (-vet=all) on the packages they build: a go vet
	@# of its own compiled every dependency once more, without -race, about 2.5 minutes
	@# on an empty build cache (docs/testing.md).
	@# The fuzz targets are built (every package under them instrumented anew) beside the
	@# -race tests, at the lowest priority: the tests leave about a fifth of the two cores
	@# idle, most of it in their last minutes, when the longest packages run alone.
	@log=$$(mktemp); nice -n 19 $(MAKE) --no-print-directory fuzz-build >$$log 2>&1 & fb=$$!; \
	echo "AVXRM_BIN=$(BIN)/avxrm-test AVXRM_BIN_VERSION=$(VERSION) $(GO) test $(TESTFLAGS) -vet=all $(PKGS)"; \
	AVXRM_BIN=$(abspath $(BIN)/avxrm-test) AVXRM_BIN_VERSION=$(VERSION) $(GO) test $(TESTFLAGS) -vet=all $(PKGS); st=$$?; \
	wait $$fb || { echo "building the fuzz targets failed:"; cat $$log; st=1; }; rm -f $$log; exit $$st
	@$(MAKE) --no-print-directory test-python-run PY_AVXRM=$(BIN)/avxrm-test
	@$(MAKE) --no-print-directory fuzz

.PHONY: test-python test-python-run
PYVENV := $(BIN)/pyvenv
PY_AVXRM ?= $(BIN)/avxrm
test-python: build-avxrm ## test the Python package (clients/python) against an all-in-one from bin/avxrm
	@$(MAKE) --no-print-directory test-python-run
test-python-run: # test-python without building bin/avxrm: PY_AVXRM names the binary
	@/usr/bin/python3 -c 'import httpx, pytest, venv, setuptools' 2>/dev/null || { \
	  echo "installing python3-httpx python3-pytest python3-venv python3-setuptools (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-httpx python3-pytest python3-venv python3-setuptools >/dev/null; }
	@test -x $(PYVENV)/bin/python || /usr/bin/python3 -m venv --system-site-packages $(PYVENV)
	$(PYVENV)/bin/pip install -q --no-build-isolation --no-index ./clients/python
	@rm -rf clients/python/build clients/python/src/*.egg-info
	@# pytest exits 5 when it collected no test: that fails too, as any status but 0 does.
	cd clients/python && AVXRM_BIN=$(abspath $(PY_AVXRM)) $(abspath $(PYVENV))/bin/python -m pytest -q -p no:cacheprovider tests; \
	  st=$$?; [ $$st -eq 5 ] && echo "pytest collected no tests"; exit $$st

.PHONY: test-linearizability
test-linearizability: ## the embedded store's linearizability check (porcupine) 5 more times, and FerretDB's own reads under expiring deadlines (the fault modernc.org/sqlite v1.32 had; docs/scheduling.md)
	$(GO) test -race -count=5 -timeout 20m -tags storefault -run '^(TestProxyIsLinearizable|TestFerretDBReadsStayFreshWhenQueriesTimeOut)$$' -v ./pkg/embedded/ferretembed/

.PHONY: bench-estimate
bench-estimate: ## the start estimate's accuracy over 100 random jobs on the simulated driver (minutes; prints the median absolute error)
	cd cmd/avxrm && $(GO) test -count=1 -timeout 20m -tags estimate -run '^TestStartEstimateAccuracy$$' -v ./internal/up/

.PHONY: fuzz
# FUZZ_PACKAGES prints each package with fuzz targets and its directory, one per line.
FUZZ_PACKAGES = $(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' $(PKGS) | \
  while read -r pkg dir; do if grep -qs '^func Fuzz' $$dir/*_test.go; then echo "$$pkg $$dir"; fi; done

# Go 1.26's fuzzing coordinator can fail a target with a bare "context deadline exceeded"
# as -fuzztime ends, on a busy machine, without any failing input (go.dev/issue/75804, fixed
# in Go 1.27): such a run, which wrote nothing to testdata/fuzz/<target>, is run once more.
fuzz: ## run each fuzz target for FUZZTIME (default 10s)
	@set -o pipefail; $(FUZZ_PACKAGES) | while read -r pkg dir; do \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go | cut -d' ' -f2); do \
	    for try in 1 2; do \
	      echo "fuzz $$pkg $$f"; log=$$(mktemp); \
	      $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg </dev/null 2>&1 | tee $$log; st=$$?; \
	      race=$$(grep -c '^    context deadline exceeded$$' $$log); rm -f $$log; \
	      [ $$st -eq 0 ] && break; \
	      if [ $$try = 1 ] && [ "$$race" != 0 ] && [ -z "$$(git -C $$dir status --porcelain -- testdata/fuzz/$$f 2>/dev/null)" ]; then \
	        echo "fuzz $$f: no failing input written: the coordinator's race of go.dev/issue/75804; once more"; continue; fi; \
	      exit 1; \
	    done; \
	  done; \
	done

.PHONY: fuzz-build
fuzz-build: ## build the fuzz targets' instrumented test binaries into the build cache (make test does it beside the -race tests)
	@set -o pipefail; $(FUZZ_PACKAGES) | while read -r pkg dir; do \
	  echo "build fuzz targets of $$pkg"; \
	  $(GO) test -run '^$$' -fuzz '^$$' -fuzztime 1x $$pkg </dev/null || exit 1; \
	done

.PHONY: bench
bench: ## run the benchmarks and print their figures
	$(GO) test -run '^$$' -bench . -benchtime 5x ./services/scheduler/internal/admit/
	$(GO) test -run '^$$' -bench BenchmarkUpdateByID -benchtime 200x ./pkg/embedded/ferretembed/
	$(GO) test -run '^$$' -bench BenchmarkJobsPage -benchtime 20x -timeout 30m ./services/api/internal/ui/

.PHONY: bench-compare
bench-compare: build-avxrm ## run the same workloads on Slurm (installed from Debian if missing) and on avxrm up, and print both, with our hand-over by phase and where our mixed workload's time went
	@command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || { \
	  echo "installing Slurm and munge (Debian packages) for the comparison"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; }
	$(GO) run ./tools/benchcompare -avxrm $(BIN)/avxrm $(BENCHFLAGS)

.PHONY: kube-bins test-kube
kube-bins: ## build kube-apiserver and etcd for test-kube (cached in ~/.cache/avxrm/kubeserver; ~7.5 min the first time)
	@tools/kubeserver/build.sh >/dev/null

test-kube: kube-bins ## run the kubernetes driver against a real kube-apiserver + etcd (conformance, RBAC from the chart, the seed example through the all-in-one)
	AVXRM_KUBE_BIN_DIR=$$(tools/kubeserver/build.sh) $(GO) test -tags kube $(TESTFLAGS) -v -run 'APIServer' ./services/launcher/internal/driver/kubernetes/ ./cmd/avxrm/internal/up/

.PHONY: bench-history
bench-history: ## submission, admission, hand-over and the mixed workload on an empty store and on one with RM_BENCH_HISTORY (100,000) finished jobs, one after the other and in alternating turns; prints both and the ratios
	cd cmd/avxrm && $(GO) test -run '^$$' -bench 'BenchmarkHistory$$|BenchmarkHistoryInterleaved|BenchmarkHistoryMixed' -benchtime 300x -timeout 90m ./internal/up/ > $(CURDIR)/bench-history.out; \
		status=$$?; cat $(CURDIR)/bench-history.out; awk -f $(CURDIR)/tools/benchhistory.awk $(CURDIR)/bench-history.out; exit $$status

.PHONY: bench-bigjob
bench-bigjob: ## a 100,000-worker job through the all-in-one (simulated driver): minutes
	cd cmd/avxrm && $(GO) test -run '^$$' -bench BenchmarkBigJob -benchtime 1x -timeout 60m ./internal/up/

.PHONY: verify-mod-tidy fix-mod-tidy
verify-mod-tidy: ## fail if any go.mod/go.sum is not tidy
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy -diff) || { echo "$$m: run make fix-mod-tidy"; exit 1; }; done
	@for m in $(NOT_IN_WORKSPACE); do (cd $$m && GOWORK=off $(GO) mod tidy -diff) || { echo "$$m: run make fix-mod-tidy"; exit 1; }; done
fix-mod-tidy: ## go mod tidy every module
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy); done
	@for m in $(NOT_IN_WORKSPACE); do (cd $$m && GOWORK=off $(GO) mod tidy); done

.PHONY: verify-go-workspace fix-go-workspace
verify-go-workspace: ## fail if go.work does not list exactly the modules in the tree
	@want=$$(find . -name go.mod -not -path './.git/*' $(NOT_IN_WORKSPACE_FIND) -printf '%h\n' | sed 's|^\./||' | sort); \
	 have=$$(echo $(MODULES) | tr ' ' '\n' | sort); \
	 [ "$$want" = "$$have" ] || { echo "go.work lists: $$have"; echo "tree has: $$want"; echo "run make fix-go-workspace"; exit 1; }
fix-go-workspace: ## make go.work use every module in the tree
	@find . -name go.mod -not -path './.git/*' $(NOT_IN_WORKSPACE_FIND) -printf '%h\n' | xargs $(GO) work use

.PHONY: generate-sdk
generate-sdk: ## copy the OpenAPI document the server serves into the Go SDK and regenerate its client
	cd services/api/contracttest && $(GO) test -count=1 -run '^TestGeneratedClientIsCurrent$$' . -update
	cd sdk/go/avxrm/api && $(GO) generate ./...

.PHONY: fmt
fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

.PHONY: clean
clean: ## remove build output and the local data dir
	rm -rf $(BIN) .rm-data

.PHONY: images
images: ## build the images avxrm/<service>:dev offline (static binaries FROM scratch, nats, store, busybox workers)
	GO=$(GO) VERSION=$(VERSION) deploy/images/build.sh

COMPOSE_FILES := -f compose.yaml -f compose.offline.yaml
COMPOSE_PROJECT ?= avxrm

.PHONY: compose-deps compose-up compose-down compose-test
compose-deps:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing docker-compose (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }

compose-up: compose-deps images ## run the offline compose stack (deploy/compose) on the local Docker Engine; API on 127.0.0.1:8080
	cd deploy/compose && COMPOSE_PROJECT_NAME=$(COMPOSE_PROJECT) docker-compose -p $(COMPOSE_PROJECT) $(COMPOSE_FILES) up -d

compose-down: compose-deps ## stop the compose stack and remove its workers, containers, networks and volumes
	@ids=$$(docker ps -aq --filter label=rm.managed --filter network=$(COMPOSE_PROJECT)_workers); \
	 [ -z "$$ids" ] || docker rm -f -v $$ids >/dev/null
	cd deploy/compose && COMPOSE_PROJECT_NAME=$(COMPOSE_PROJECT) docker-compose -p $(COMPOSE_PROJECT) $(COMPOSE_FILES) down -v --remove-orphans -t 5

compose-test: compose-deps images ## the offline compose stack end to end: seed jobs, leaders killed, no duplicate, nothing left
	cd deploy && $(GO) test -tags composetest -count=1 -v -timeout 20m -run TestComposeStack .

FAULT_FLAGS ?=
.PHONY: fault-test
fault-test: compose-deps images ## fault suite on the offline compose stack: 10,000 jobs while each service is killed, NATS and the store restarted, a launcher cut off (docs/faults.md; FAULT_FLAGS=-submissions=N)
	cd deploy && $(GO) run ./faulttest $(FAULT_FLAGS)

.PHONY: helm-test
helm-test: ## lint and render the Helm chart with Helm's library, decode it strictly, check its Role against the kubernetes driver
	cd deploy && $(GO) test -count=1 -run 'Helm' .
	$(GO) test -count=1 -run 'HelmRole' ./services/launcher/
