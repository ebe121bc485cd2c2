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
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/tdf

.PHONY: run
run: build ## run a local three-node cluster (APIs on 127.0.0.1:8001-8003); Ctrl-C stops it
	./$(BIN) dev --data-dir $(DATA)

.PHONY: test
test: ## run every test under the race detector, then the fuzz targets briefly
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

# Every fuzz target, as package:Target (RELIABILITY.md says what each checks).
FUZZ_TARGETS := \
	fsm:FuzzDecode fsm:FuzzApplyCommand \
	api:FuzzSubmitHandler api:FuzzTaskWriteHandlers api:FuzzClusterHandlers \
	api:FuzzCallbackHandlers api:FuzzReadHandlers

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 2000 inputs; a count avoids a Go 1.26 fuzz coordinator race)
	@set -e; for pt in $(FUZZ_TARGETS); do \
		pkg=$${pt%%:*}; target=$${pt##*:}; \
		echo "== $$target (./$$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) ./$$pkg/; \
	done

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: clean
clean: ## remove the binary and the dev cluster's data
	rm -rf bin $(DATA)
