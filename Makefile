# The README's two commands are `make demo` and `make test`; each sets itself up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The stamp names the install's shape: a venv installed before bytecode compilation is installed again.
STAMP := $(VENV)/.installed-compiled
UV_VERSION := 0.9.30
# The pipeline (plugins/) and the local tools (dev/) on the path; Airflow itself gets plugins/ alone.
DEV := PYTHONPATH=plugins:dev $(PY) -m
STACK := $(DEV) claims_cdc_dev.stack
# The stack's state folder (stack.env, logs, databases): CDC_STATE_DIR, as claims_cdc_dev.stack reads it.
STATE := $(or $(CDC_STATE_DIR),.local)

.PHONY: install stack-up stack-down stack-status status up down alerts demo test test-fast lint bench bench-load bench-freshness clean

install: $(STAMP)

# Python packages into .venv: the runtime plus the local stack, tests and lint (requirements-dev.txt
# includes requirements.txt). uv resolves and installs in seconds; pip would take minutes. Bytecode is
# compiled at install (about 40 s), as pip does by default and uv does not: without it every `airflow`
# process compiles its imports from source (`import airflow` 6.5 s instead of 2.7 s here), and where
# PYTHONDONTWRITEBYTECODE is set, as on this machine, it does so on every start.
$(STAMP): requirements.txt requirements-dev.txt
	@command -v python3 >/dev/null || { echo "python3 (3.11+) is required" >&2; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.txt
	@touch $(STAMP)

stack-up: install
	@$(STACK) up

stack-down:
	@test -x $(PY) && $(STACK) down || true

stack-status: install
	@$(STACK) status

# The pipeline at a glance, against the running local stack (`make up` or `make stack-up`): shards and their
# lag, the last batch, the staging backlog, dead letters by reason, the last reconciliation. No values.
# STATUS_ARGS=--json for JSON.
status: install
	@test -f $(STATE)/stack.env || { echo "no $(STATE)/stack.env: start the stack first (make up or make stack-up)" >&2; exit 1; }
	@set -a; . $(STATE)/stack.env; set +a; $(DEV) claims_cdc.admin status $(STATUS_ARGS)

# The local stack plus Airflow (UI on 127.0.0.1:8080, scheduler, dag-processor, triggerer); claims_cdc
# unpaused and micro-batching. `make down` stops everything.
up: install
	@$(STACK) up --airflow

down:
	@test -x $(PY) && $(STACK) down || true

# The local alert inbox (SQS claims-cdc-alerts-inbox, subscribed to SNS claims-cdc-alerts), oldest first.
# Reading leaves the messages in the queue; `make alerts DRAIN=1` deletes what it printed.
alerts: install
	@set -a; . $(STATE)/stack.env; set +a; $(DEV) claims_cdc_dev.alerts_inbox $(if $(DRAIN),--drain)

# The seed's scenario on a clean local stack, with the seed's verification queries; stops the stack after.
demo: install
	@$(STACK) up
	@set -a; . $(STATE)/stack.env; set +a; $(DEV) claims_cdc_dev.demo; status=$$?; $(STACK) down; exit $$status

# Debian's Chromium for the browser test (Playwright drives it; its own browser download does not work here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser test (apt-get)"
	@SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null

# The whole suite, as CI runs it: every tier, Hypothesis' "ci" profile (the full example counts). The
# tests marked `deployment` (a whole `make up` of their own, mostly waiting on Airflow's scheduler) and
# the server-less, CPU-heavy ones marked `second_process` run in a second pytest process beside the rest;
# its report follows the main one. Tests start their own
# stack on free ports under .local/test-stack, and the deployment under .local/test-deploy (browser
# screenshots in .local/test-artifacts).
test: install $(CHROMIUM)
	@mkdir -p .local
	@HYPOTHESIS_PROFILE=ci $(PY) -m pytest -c tests/pytest.ini -m "deployment or second_process" $(PYTEST_ARGS) \
	  > .local/test-deployment.log 2>&1 & deployment=$$!; \
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -c tests/pytest.ini -m "not deployment and not second_process" $(PYTEST_ARGS); main=$$?; \
	wait $$deployment; deployed=$$?; \
	echo "== the deployment tests (second process) =="; cat .local/test-deployment.log; \
	exit $$(( main != 0 ? main : deployed ))

# The edit loop: no servers (unit tests, in-process moto, the offline DAG parse, transform, SQL templates,
# the merge model), Hypothesis' small "dev" profile. Tests marked `stack` are left out.
test-fast: install
	@HYPOTHESIS_PROFILE=dev $(PY) -m pytest -c tests/pytest.ini -m "not stack" $(PYTEST_ARGS)

# The pipeline's speed as ratios to a plain read (issue 10): on a clean local stack without the forwarder and
# with a 4-shard stream, generates BENCH_CHANGES changes (default 100000), measures the floors, drains in one
# process and through `airflow dags test`, checks the destination, prints the table, writes
# dev/figures/bench.png. Fails only on a wrong destination, never on speed.
bench: install
	@CDC_FORWARDER=off CDC_SHARDS=$${BENCH_SHARDS:-4} $(STACK) up >/dev/null
	@set -a; . $${CDC_STATE_DIR:-.local}/stack.env; set +a; $(DEV) claims_cdc_dev.bench; status=$$?; $(STACK) down >/dev/null; exit $$status

# Bulk staging and merge throughput on a clean local stack (BENCH_ROWS rows, default 5000).
bench-load: install
	@CDC_FORWARDER=off $(STACK) up >/dev/null
	@set -a; . $(STATE)/stack.env; set +a; $(DEV) claims_cdc_dev.bench_load; status=$$?; $(STACK) down >/dev/null; exit $$status

# Freshness under `make up`: claims written with plain boto3 at BENCH_RATE/s for BENCH_SECONDS; p50/p95
# seconds from write to visible in the destination. Starts a clean deployment and stops it after.
bench-freshness: install
	@$(STACK) up --airflow >/dev/null
	@set -a; . $(STATE)/stack.env; set +a; $(DEV) claims_cdc_dev.bench_freshness; status=$$?; $(STACK) down >/dev/null; exit $$status

lint: install
	@$(VENV)/bin/ruff check dags plugins dev tests

clean: stack-down
	rm -rf .local
