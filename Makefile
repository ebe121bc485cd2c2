# tdf — make help lists the targets.
GO      ?= go
BIN     ?= bin/tdf
DATA    ?= ./data/dev
PKGS    ?= ./...
FUZZTIME ?= 2000x

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build the tdf binary into bin/
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/tdf

.PHONY: run
run: build ## run a local three-node cluster (APIs on 127.0.0.1:8001-8003); Ctrl-C stops it
	./$(BIN) dev --data-dir $(DATA)

.PHONY: test
test: ## run every test under the race detector, then the fuzz targets briefly
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 2000 inputs; a count avoids a Go 1.26 fuzz coordinator race)
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./fsm/
	@if grep -qs 'func FuzzSubmitHandler' api/*_test.go; then \
		$(GO) test -run '^$$' -fuzz '^FuzzSubmitHandler$$' -fuzztime $(FUZZTIME) ./api/; fi

BENCH_FAILOVER_KILLS ?= 20
BENCH_OUT ?= bench-results.md

.PHONY: bench
bench: ## measure everything of BENCHMARKS.md (≈ 30 min): tdf bench, the timers benchmarks, failover timing; tables to BENCH_OUT
	@echo "tdf bench (≈ 20 min) → $(BENCH_OUT)"
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

.PHONY: clean
clean: ## remove the binary and the dev cluster's data
	rm -rf bin $(DATA)
