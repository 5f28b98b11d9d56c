# The README's two commands are `make demo` and `make test`; each sets itself up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UV_VERSION := 0.9.30
STACK := PYTHONPATH=plugins $(PY) -m claims_cdc.local.stack

.PHONY: install stack-up stack-down stack-status demo test lint bench-load clean

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

# The seed's scenario on a clean local stack, with the seed's verification queries; stops the stack after.
demo: install
	@$(STACK) up
	@set -a; . .local/stack.env; set +a; $(PY) -m claims_cdc.local.demo; status=$$?; $(STACK) down; exit $$status

# The whole suite. Tests start their own stack on free ports under .local/test-stack.
test: install
	@$(PY) -m pytest -c tests/pytest.ini $(PYTEST_ARGS)

# Bulk staging and merge throughput on a clean local stack (BENCH_ROWS rows, default 5000).
bench-load: install
	@CDC_FORWARDER=off $(STACK) up >/dev/null
	@set -a; . .local/stack.env; set +a; $(PY) -m claims_cdc.local.bench_load; status=$$?; $(STACK) down >/dev/null; exit $$status

lint: install
	@$(VENV)/bin/ruff check dags plugins tests

clean: stack-down
	rm -rf .local
