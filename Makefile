# tdf — make help lists the targets.
GO      ?= go
BIN     ?= bin/tdf
DATA    ?= ./data/dev
PKGS    ?= ./...
FUZZTIME ?= 2000x
# Minimizing each new interesting input can take a minute; brief runs skip most of it.
FUZZMINTIME ?= 100x

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build the tdf binary into bin/
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -o $(BIN) ./cmd/tdf

.PHONY: run
run: build ## run a local three-node cluster (APIs on 127.0.0.1:8001-8003); Ctrl-C stops it
	./$(BIN) dev --data-dir $(DATA)

.PHONY: test
test: ## run every test under the race detector, then the fuzz targets briefly
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

# Every fuzz target, as package:Target (RELIABILITY.md says what each checks).
FUZZ_TARGETS := \
	fsm:FuzzDecode fsm:FuzzApplyCommand fsm:FuzzTaskRecord \
	api:FuzzSubmitHandler api:FuzzTaskWriteHandlers api:FuzzClusterHandlers \
	api:FuzzCallbackHandlers api:FuzzReadHandlers \
	importer:FuzzParse

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 2000 inputs; a count avoids a Go 1.26 fuzz coordinator race)
	@set -e; for pt in $(FUZZ_TARGETS); do \
		pkg=$${pt%%:*}; target=$${pt##*:}; \
		echo "== $$target (./$$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) ./$$pkg/; \
	done

BENCH_FAILOVER_KILLS ?= 20
BENCH_OUT ?= bench-results.md

.PHONY: bench
bench: ## measure everything of BENCHMARKS.md (≈ 12 min): tdf bench, the timers benchmarks, failover timing; tables to BENCH_OUT
	@echo "tdf bench (≈ 4 min) → $(BENCH_OUT)"
	$(GO) run ./cmd/tdf bench > $(BENCH_OUT)
	@echo "timers benchmarks (≈ 3 min)"
	$(GO) test -run '^$$' -bench . -benchmem ./timers/ >> $(BENCH_OUT)
	@echo "failover timing, $(BENCH_FAILOVER_KILLS) kills → bench-failover.log"
	TDF_FAILOVER_KILLS=$(BENCH_FAILOVER_KILLS) $(GO) test -count=1 -run 'TestFailoverTiming$$' -v -timeout 40m ./e2e/ > bench-failover.log 2>&1
	grep -E -A 20 'over [0-9]+ kills \(' bench-failover.log >> $(BENCH_OUT)
	cat $(BENCH_OUT)

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# The process-level chaos run (chaos/run.sh documents every flag).
CHAOS_DURATION   ?= 2m
CHAOS_KILLS      ?= 10
CHAOS_PAUSES     ?= 4
CHAOS_PARTITIONS ?= 4
CHAOS_DISKFULLS  ?= 2
CHAOS_RATE       ?= 3
CHAOS_CLIENTS    ?= 4
CHAOS_SEED       ?= 1
CHAOS_REPORT     ?= chaos-report

.PHONY: chaos
chaos: ## chaos run on processes: kill/pause/partition the leader and fill its disk for CHAOS_DURATION (2m), then check; report in CHAOS_REPORT
	./chaos/run.sh -duration $(CHAOS_DURATION) -kills $(CHAOS_KILLS) -pauses $(CHAOS_PAUSES) -partitions $(CHAOS_PARTITIONS) -diskfulls $(CHAOS_DISKFULLS) \
		-rate $(CHAOS_RATE) -clients $(CHAOS_CLIENTS) -seed $(CHAOS_SEED) -report $(CHAOS_REPORT)

.PHONY: clean
clean: ## remove the binary and the dev cluster's data
	rm -rf bin $(DATA)

# ---------------------------------------------------------------------------
# The docker-compose cluster (docker-compose v1: the docker-compose command)

IMAGE   ?= tdf:dev
COMPOSE ?= docker-compose
CLUSTER ?= tdf
CLUSTER_COMPOSE = TDF_IMAGE=$(IMAGE) $(COMPOSE) -f docker-compose.cluster.yml -p $(CLUSTER)

.PHONY: image
image: ## build the FROM-scratch image (IMAGE, default tdf:dev: static binary + host CA certificates; nothing is pulled)
	rm -rf bin/image && mkdir -p bin/image/data
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -ldflags '-s -w' -o bin/image/tdf ./cmd/tdf
	cp /etc/ssl/certs/ca-certificates.crt bin/image/
	docker build -q -f build/Dockerfile -t $(IMAGE) bin/image

.PHONY: cluster-up
cluster-up: image ## start three nodes and the fake cloud in docker (APIs on 127.0.0.1:8001-8003, fake cloud on :9000)
	$(CLUSTER_COMPOSE) up -d
	@echo "cluster up: tdf cluster status --addr http://127.0.0.1:8001; stop it with make cluster-down"

.PHONY: cluster-down
cluster-down: ## stop the docker cluster and delete its containers, network and volumes
	$(CLUSTER_COMPOSE) down -v --remove-orphans

.PHONY: chaos-docker
chaos-docker: ## the long compose chaos run: kills, pauses and network disconnects of the leader (needs docker)
	TDF_CHAOS_DOCKER=long $(GO) test -count=1 -timeout 60m -run '^TestComposeChaos$$' -v ./chaos/
