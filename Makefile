# Resource Manager — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin
MODULES   := $(shell sed -n 's|^\t\./\(.*\)$$|\1|p' go.work)
PKGS      := $(addsuffix /...,$(addprefix ./,$(MODULES)))
TESTFLAGS ?= -race -count=1 -timeout 15m
FUZZTIME  ?= 10s

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build build-avxrm
build-avxrm:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/avxrm ./cmd/avxrm

build: build-avxrm ## build avxrm and the per-service binaries into bin/
	$(GO) build -o $(BIN)/ $(addprefix ./,$(addsuffix /...,$(wildcard services/*/cmd)))

.PHONY: run
run: build-avxrm ## build, then run the whole system locally on embedded NATS and FerretDB (avxrm up)
	./$(BIN)/avxrm up

.PHONY: test-deps
test-deps: ## install what the tests need (headless chromium for the docs page test)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@docker info >/dev/null 2>&1 || { echo "the Docker Engine is not reachable; the docker driver tests need it"; exit 1; }

.PHONY: vet
vet: ## go vet every module
	$(GO) vet $(PKGS)

.PHONY: test
test: test-deps vet verify-go-workspace ## install test needs, vet, then run every module's tests with -race and a short fuzz run
	$(GO) test $(TESTFLAGS) $(PKGS)
	@$(MAKE) --no-print-directory fuzz

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 10s)
	@for pkg in $$($(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' $(PKGS)); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | cut -d' ' -f2); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

.PHONY: bench
bench: ## run the benchmarks and print their figures
	$(GO) test -run '^$$' -bench . -benchtime 5x ./services/scheduler/internal/admit/
	$(GO) test -run '^$$' -bench BenchmarkUpdateByID -benchtime 200x ./pkg/embedded/ferretembed/

.PHONY: verify-mod-tidy fix-mod-tidy
verify-mod-tidy: ## fail if any go.mod/go.sum is not tidy
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy -diff) || { echo "$$m: run make fix-mod-tidy"; exit 1; }; done
fix-mod-tidy: ## go mod tidy every module
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy); done

.PHONY: verify-go-workspace fix-go-workspace
verify-go-workspace: ## fail if go.work does not list exactly the modules in the tree
	@want=$$(find . -name go.mod -not -path './.git/*' -printf '%h\n' | sed 's|^\./||' | sort); \
	 have=$$(echo $(MODULES) | tr ' ' '\n' | sort); \
	 [ "$$want" = "$$have" ] || { echo "go.work lists: $$have"; echo "tree has: $$want"; echo "run make fix-go-workspace"; exit 1; }
fix-go-workspace: ## make go.work use every module in the tree
	@find . -name go.mod -not -path './.git/*' -printf '%h\n' | xargs $(GO) work use

.PHONY: fmt
fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

.PHONY: clean
clean: ## remove build output and the local data dir
	rm -rf $(BIN) .rm-data

.PHONY: images
images: ## build the images avxrm/<service>:dev offline (static binaries FROM scratch, nats, store, busybox workers)
	GO=$(GO) deploy/images/build.sh

COMPOSE_FILES := -f compose.yaml -f compose.offline.yaml
COMPOSE_PROJECT ?= avxrm

.PHONY: compose-deps compose-up compose-down compose-test
compose-deps:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing docker-compose (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }

compose-up: compose-deps images ## run the offline compose stack (deploy/compose) on the local Docker Engine; API on 127.0.0.1:8080
	cd deploy/compose && docker-compose -p $(COMPOSE_PROJECT) $(COMPOSE_FILES) up -d

compose-down: compose-deps ## stop the compose stack and remove its workers, containers, networks and volumes
	@ids=$$(docker ps -aq --filter label=rm.managed=true --filter network=$(COMPOSE_PROJECT)_workers); \
	 [ -z "$$ids" ] || docker rm -f -v $$ids >/dev/null
	cd deploy/compose && docker-compose -p $(COMPOSE_PROJECT) $(COMPOSE_FILES) down -v --remove-orphans -t 5

compose-test: compose-deps images ## the offline compose stack end to end: seed jobs, leaders killed, no duplicate, nothing left
	cd deploy && $(GO) test -tags composetest -count=1 -v -timeout 20m -run TestComposeStack .

.PHONY: helm-test
helm-test: ## lint and render the Helm chart with Helm's library, decode it strictly, check its Role against the kubernetes driver
	cd deploy && $(GO) test -count=1 -run 'Helm' .
	$(GO) test -count=1 -run 'HelmRole' ./services/launcher/
