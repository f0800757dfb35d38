# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CLI := $(BIN)/cdr-publisher

.PHONY: help venv kcat helm stack-up stack-down stack-status lint typecheck unit integration test demo bench bench-quick clean schema

help:
	@echo "make demo    - local Kafka + registry + Webex simulator, run the publisher, show what landed"
	@echo "make test    - lint, type check, unit and integration tests against a real local stack"
	@echo "make bench   - throughput, memory, fleet and failover benchmarks (make bench-quick: short)"

# native/ is the compiled page reader (Rust, built by maturin through pip; about a minute the first
# time). The daemon works without it, slower; the tests insist on it, so that CI measures and
# checks the path users run.
$(STAMP): pyproject.toml native/Cargo.toml native/Cargo.lock native/src/lib.rs native/cdr_publisher_native.pyi
	@command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: the compiled page reader needs a Rust toolchain (https://rustup.rs)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q ./native
	touch $(STAMP)

venv: $(STAMP)

stack-up: venv
	$(CLI) stack up

stack-down: venv
	$(CLI) stack down

stack-status: venv
	$(CLI) stack status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv helm
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

# kcat runs one of the docs/consumers.md recipes in the tests; Debian packages it. Installed here
# (as root, the machine's user) so that `make test` needs no manual step.
kcat:
	@command -v kcat >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq kcat >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq kcat; }; \
	  else echo "kcat is missing: sudo apt-get install kcat" >&2; exit 1; fi; }

# The deploy tests run the real helm (lint, template) on the chart. It installs as a Go module;
# the version is pinned so that every run checks the chart with the same renderer. The tests find
# it through HELM, exported below (the PATH of whoever runs `pytest` need not hold GOPATH/bin).
HELM_VERSION := v3.22.0
GOBIN_DIR := $(shell go env GOBIN 2>/dev/null)
GOBIN_DIR := $(or $(GOBIN_DIR),$(shell go env GOPATH 2>/dev/null)/bin)
HELM ?= $(or $(shell command -v helm 2>/dev/null),$(GOBIN_DIR)/helm)
export HELM

helm:
	@[ -x "$(HELM)" ] || { \
	  command -v go >/dev/null 2>&1 || { echo "helm is missing and so is go to install it: see https://go.dev/doc/install" >&2; exit 1; }; \
	  echo "installing helm $(HELM_VERSION) into $(GOBIN_DIR) (a few minutes the first time)"; \
	  GOBIN="$(GOBIN_DIR)" go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }

# The stack comes up first and goes down whatever happens, so a failed run leaves no java behind.
test: venv kcat helm
	@set -euo pipefail; \
	if $(CLI) stack status >/dev/null 2>&1; then started=0; else started=1; fi; \
	if [ $$started = 1 ]; then trap '$(CLI) stack down' EXIT; fi; \
	$(CLI) stack up; \
	$(MAKE) --no-print-directory lint typecheck; \
	$(BIN)/pytest tests

# The stack stays up afterwards so you can look around (`cdr-publisher tail`, `state`);
# `make stack-down` stops it.
demo: venv
	$(CLI) demo

# Figures of issue 7 against the local stack (reused if running); table on stdout, JSON in
# bench-results.json. BENCH_ARGS passes options through (e.g. BENCH_ARGS="--skip daemon"); the
# fleet (issue 11) and failover (issue 12) sections run in `bench` only, or with --with NAME.
bench: venv
	$(CLI) stack up
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: venv
	$(CLI) stack up
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

# Regenerate the committed event schema and the consumer kit's typed model from the field table
# (a test fails when either differs).
schema: venv
	$(BIN)/python -m publisher.event_schema > schemas/cdr-event.schema.json
	$(BIN)/python -m publisher.consumer.codegen > publisher/consumer/fields.py

clean:
	-$(CLI) stack down --purge
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
