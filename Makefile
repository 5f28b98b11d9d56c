# The README's two commands are `make demo` and `make test`; each sets itself up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.9.30
STACK := PYTHONPATH=plugins $(PY) -m claims_cdc.local.stack

.PHONY: install stack-up stack-down stack-status up down demo test lint bench-load bench-freshness clean

install: $(STAMP)

# Python packages into .venv (uv resolves and installs in seconds; pip would take minutes).
$(STAMP): requirements.txt
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required" >&2; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@$(VENV)/bin/uv pip install --quiet --python $(PY) -r requirements.txt
	@touch $(STAMP)

stack-up: install
	@$(STACK) up

stack-down:
	@test -x $(PY) && $(STACK) down || true

stack-status: install
	@$(STACK) status

# The local stack plus Airflow (UI on 127.0.0.1:8080, scheduler, dag-processor, triggerer); claims_cdc
# unpaused and micro-batching. `make down` stops everything.
up: install
	@$(STACK) up --airflow

down:
	@test -x $(PY) && $(STACK) down || true

# The seed's scenario on a clean local stack, with the seed's verification queries; stops the stack after.
demo: install
	@$(STACK) up
	@set -a; . .local/stack.env; set +a; $(PY) -m claims_cdc.local.demo; status=$$?; $(STACK) down; exit $$status

# Debian's Chromium for the browser test (Playwright drives it; its own browser download does not work here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser test (apt-get)"
	@SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null

# The whole suite. Tests start their own stack on free ports under .local/test-stack, and tests/deploy
# a whole `make up` deployment under .local/test-deploy (browser screenshots in .local/test-artifacts).
test: install $(CHROMIUM)
	@$(PY) -m pytest -c tests/pytest.ini $(PYTEST_ARGS)

# Bulk staging and merge throughput on a clean local stack (BENCH_ROWS rows, default 5000).
bench-load: install
	@CDC_FORWARDER=off $(STACK) up >/dev/null
	@set -a; . .local/stack.env; set +a; $(PY) -m claims_cdc.local.bench_load; status=$$?; $(STACK) down >/dev/null; exit $$status

# Freshness under `make up`: claims written with plain boto3 at BENCH_RATE/s for BENCH_SECONDS; p50/p95
# seconds from write to visible in the destination. Starts a clean deployment and stops it after.
bench-freshness: install
	@$(STACK) up --airflow >/dev/null
	@set -a; . .local/stack.env; set +a; $(PY) -m claims_cdc.local.bench_freshness; status=$$?; $(STACK) down >/dev/null; exit $$status

lint: install
	@$(VENV)/bin/ruff check dags plugins tests

clean: stack-down
	rm -rf .local
