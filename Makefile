# The README's two commands. Each one installs what it needs into .venv first,
# so a fresh machine needs nothing but Python 3.11.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format demo sandbox bench ui

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# the gates that keep the house: formatting, lint (incl. SQL built from values), import contracts
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	bash scripts/ensure_postgres.sh
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest -n auto sync_platform_tests

demo: install
	$(BIN)/sync-platform demo --contacts 20000

# the benchmarks' extra (pandas baselines), then every benchmark at its default size
bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	for script in benchmarks/sandbox.py benchmarks/ingest.py benchmarks/canonical.py benchmarks/change_impact.py benchmarks/raw_history.py benchmarks/reconcile.py benchmarks/writeback.py; do \
		$(BIN)/python $$script || exit 1; \
	done

# the Dagster UI on a prepared instance, against the sandbox unless CRMs are configured
ui: install
	$(BIN)/sync-platform ui

sandbox: install
	$(BIN)/sync-platform sandbox --contacts 20000
