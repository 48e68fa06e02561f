# Dovecote: `make run` brings the federation up, `make test` proves it works.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test lint bench docs system-deps clean

## run: the whole federation (services=... picks some: make run services="builder gateway=2")
run: $(RUN_STAMP)
	$(BIN)/dovecote run $(services)

## test: the whole suite (real broker, real processes, real headless chromium)
test: $(DEV_STAMP) system-deps
	$(BIN)/pytest

## lint: ruff (lint + format) and mypy --strict
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: throughput and latency figures, side by side in one run
bench: $(DEV_STAMP) system-deps
	$(BIN)/python -m bench

## docs: regenerate docs/topics.md and docs/schemas/ from the topic registry
docs: $(DEV_STAMP)
	$(BIN)/python -m shared.docs

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(RUN_STAMP)

# Tests start their own Mosquitto and drive Debian's chromium; install both if missing.
system-deps:
	@./deploy/ensure-packages.sh mosquitto:mosquitto mosquitto_sub:mosquitto-clients chromium:chromium

clean:
	rm -rf $(VENV) .dovecote .pytest_cache .mypy_cache .ruff_cache
