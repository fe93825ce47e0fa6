# Backfleet's everyday commands. `make up` runs the whole fleet on this machine;
# `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv up test lint bench bench-audit clean

venv: $(VENV)/.installed

# Re-install only when pyproject.toml changes (or the venv is new).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

up: venv
	$(BIN)/backfleet up

test: venv
	bash scripts/test-deps.sh
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: venv
	@if [ -x bench/run.sh ]; then bench/run.sh; else echo "no benchmarks yet: bench/run.sh is missing"; fi

# The audit trail's benchmark (API ingest, middleware overhead, a flush of 1M events to S3).
bench-audit: venv
	timeout --foreground --kill-after=60 30m $(BIN)/python -m bench.audit_bench

# Keeps ./var: it holds the API key, the catalog and the local backups.
clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .import_linter_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
