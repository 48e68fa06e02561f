# Dovecote: `make run` brings the federation up, `make test` proves it works.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
DEV_STAMP := $(VENV)/.dev-installed
# The official AsyncAPI parser (npm), which tests/test_asyncapi.py runs on docs/asyncapi.yaml.
PARSER_STAMP := tests/asyncapi/node_modules/.package-lock.json
# axe-core (npm), the accessibility checker the Chromium tests run on every page (tests/a11y.py).
AXE_STAMP := tests/axe/node_modules/.package-lock.json
# The captioner, a service in Node.js (mqtt.js, ajv), which tests/test_node_subscriber.py runs.
CAPTIONER_STAMP := examples/node-captioner/node_modules/.package-lock.json

.PHONY: run test check lint bench chaos docs upgrade audit system-deps clean

## run: the whole federation (services=... picks some: make run services="builder gateway=2")
run: $(RUN_STAMP)
	$(BIN)/dovecote run $(services)

## test: the whole suite (real broker, real processes, real headless chromium). Bytecode is
##       kept, as in make check: the suite starts ~800 Python processes, each compiling the
##       project's modules again where PYTHONDONTWRITEBYTECODE is set (~0.1 s of CPU a gateway).
test: $(DEV_STAMP) system-deps $(PARSER_STAMP) $(AXE_STAMP) $(CAPTIONER_STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n $${TEST_WORKERS:-3} --dist loadgroup

## check: the fast loop, no broker (seconds): lint, the contract against the last release
##        (dovecote contract check, docs/contract.md), then every test that needs no real broker
##        (units, and services on the in-memory bus of dovecote_testing.memory). --no-broker
##        leaves out the tests that use one, and fails a test that starts one anyway; it
##        leaves out those marked npm too (the AsyncAPI parser: make test installs and runs
##        it). Nothing is installed: no system package, no npm. Bytecode is kept between runs
##        even where PYTHONDONTWRITEBYTECODE is set (compiling ~250 modules again, pytest's
##        rewritten tests included, cost ~3 s a run). Three pytest-xdist workers (CHECK_WORKERS=1
##        for one; three beat two on two cores: tests wait on sign-ins' Argon2id and files):
##        18.9 s on an idle 2-core machine, 29 s of CPU (2026-12-07, docs/adding-a-service.md).
##        Tests that measure fresh interpreters (marked fresh_process) are left to make test.
check: lint
	$(BIN)/dovecote contract check --quiet
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest --no-broker -q -n $${CHECK_WORKERS:-3}

## lint: ruff (lint + format) and mypy --strict
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## chaos: the long fault suite: services killed with -9 again and again under load, a broker
##        restart mid-stream, poison messages, a pool worker killed, each node of a RabbitMQ
##        cluster killed in turn, 12 times, every worker's failover timed (~15-20 min), and the
##        hostile-input fuzz run at full size (tests marked fuzz: FUZZ_EXAMPLES=100000 and a
##        random FUZZ_SEED unless set); prints the fault table and writes it to
##        .dovecote/chaos/long.md (make test runs a short version of each)
chaos: $(DEV_STAMP) system-deps
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100000} FUZZ_SEED=$${FUZZ_SEED:-random} \
	  $(BIN)/pytest -m "chaos or fuzz" --chaos=long

## bench: throughput and latency figures, side by side in one run (sections=... picks some:
##        make bench sections="gateway"; sections are consume, wslatency, pipeline, gateway, pool, inbox, stores,
##        herd: 100,000 websockets on one gateway process, README "A herd of sockets")
bench: $(DEV_STAMP) system-deps
	@command -v node >/dev/null && command -v npm >/dev/null || echo "bench: no Node.js/npm:" \
	  "the socket.io and ws peers will be skipped (sudo apt-get install -y nodejs npm)"
	$(BIN)/python -m bench $(sections)

## docs: regenerate docs/topics.md, docs/asyncapi.yaml, docs/schemas/, deploy/'s ACLs (from the
##       registry) and deploy/systemd's units (one per service folder)
docs: $(DEV_STAMP)
	$(BIN)/python -m dovecote.tools.docs
	$(BIN)/python -m dovecote.tools.acl
	$(BIN)/python -m dovecote.tools.units

## upgrade: move the locked versions (requirements/*.txt) to the newest pyproject.toml allows,
##          then install them; commit the two files on their own, so CI tests exactly that set
upgrade: $(DEV_STAMP)
	$(BIN)/pip-compile -q --upgrade -o requirements/run.txt pyproject.toml
	$(BIN)/pip-compile -q --upgrade --extra dev -o requirements/dev.txt pyproject.toml
	$(BIN)/pip install -q --require-hashes -r requirements/dev.txt
	@git diff --stat -- requirements/

## audit: the locked set against PyPI's advisory database (pip-audit); needs pypi.org's JSON API,
##        and fails (--strict) when a package could not be checked, never "no known vulnerabilities"
audit: $(DEV_STAMP)
	$(BIN)/pip-audit --strict --disable-pip --require-hashes -r requirements/dev.txt

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Installs come from the hash-pinned lock files (make upgrade writes them from pyproject.toml):
# every machine gets the versions CI tested, and a file that differs from the one locked is
# refused. The project itself goes in last, editable, its dependencies already there.
$(RUN_STAMP): requirements/run.txt pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q --require-hashes -r requirements/run.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# pip itself first, at the version locked: a new venv's (Python 3.11's pip 23.2) takes the
# extra pip-audit asks for (cachecontrol[filecache]) as a requirement of its own, unpinned,
# and --require-hashes refuses the whole lock.
$(DEV_STAMP): requirements/dev.txt pyproject.toml | $(VENV)/bin/python
	awk '/^pip==/{p=1} p&&/^ *#/{exit} p' requirements/dev.txt > $(VENV)/pip-lock.txt
	$(BIN)/pip install -q --require-hashes -r $(VENV)/pip-lock.txt
	$(BIN)/pip install -q --require-hashes -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@ $(RUN_STAMP)

# Tests start their own Mosquitto, drive Debian's chromium, run the AsyncAPI parser with
# node, check /metrics with Prometheus' promtool and start a private PostgreSQL (initdb,
# pg_ctl); install what is missing.
system-deps:
	@./deploy/ensure-packages.sh mosquitto:mosquitto mosquitto_sub:mosquitto-clients chromium:chromium npm:npm rabbitmq-server:rabbitmq-server promtool:prometheus pg_ctlcluster:postgresql

# --ignore-scripts: nothing the parser needs runs at install time (one dependency's
# postinstall only sends usage analytics).
$(PARSER_STAMP): tests/asyncapi/package.json tests/asyncapi/package-lock.json | system-deps
	npm ci --prefix tests/asyncapi --ignore-scripts --no-audit --no-fund --loglevel=error

# Pinned by the committed lock file; axe-core has no install scripts, none run anyway.
$(AXE_STAMP): tests/axe/package.json tests/axe/package-lock.json | system-deps
	npm ci --prefix tests/axe --ignore-scripts --no-audit --no-fund --loglevel=error

# Pinned by the committed lock file; none of its packages needs an install script.
$(CAPTIONER_STAMP): examples/node-captioner/package.json examples/node-captioner/package-lock.json | system-deps
	npm ci --prefix examples/node-captioner --ignore-scripts --no-audit --no-fund --loglevel=error

clean:
	rm -rf $(VENV) .dovecote .pytest_cache .mypy_cache .ruff_cache tests/asyncapi/node_modules \
	  tests/axe/node_modules examples/node-captioner/node_modules
