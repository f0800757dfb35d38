# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CLI := $(BIN)/cdr-publisher

.PHONY: help venv stack-up stack-down stack-status lint typecheck unit integration test demo bench bench-quick clean schema

help:
	@echo "make demo    - local Kafka + registry + Webex simulator, run the publisher, show what landed"
	@echo "make test    - lint, type check, unit and integration tests against a real local stack"
	@echo "make bench   - throughput and memory benchmarks (make bench-quick for a short run)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
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

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

# The stack comes up first and goes down whatever happens, so a failed run leaves no java behind.
test: venv
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
# bench-results.json. BENCH_ARGS passes options through (e.g. BENCH_ARGS="--skip daemon").
bench: venv
	$(CLI) stack up
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: venv
	$(CLI) stack up
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

# Regenerate the committed event schema from the field table (a test fails when they differ).
schema: venv
	$(BIN)/python -m publisher.event_schema > schemas/cdr-event.schema.json

clean:
	-$(CLI) stack down --purge
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
