# Backfleet's everyday commands. `make up` runs the whole fleet on this machine;
# `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv venv-dev up test lint docs bench bench-audit bench-pitr clean

# What running needs (`make up`), and what testing and linting add (the dev extras:
# pytest, mypy, ruff, moto, rclone, mkdocs…, about half the venv).
venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

# Re-install only when pyproject.toml changes (or the venv is new).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed

up: venv
	$(BIN)/backfleet up

test: venv-dev
	bash scripts/test-deps.sh
	$(BIN)/pytest -q

lint: venv-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation site: the reference pages generated from the code (docs/reference/),
# then the whole site built into site/ (open site/index.html); --strict fails on any
# broken link or anchor. Nothing is fetched from the network.
docs: venv-dev
	$(BIN)/python -m workers.cli.docgen docs/reference
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: venv-dev
	@if [ -x bench/run.sh ]; then bench/run.sh; else echo "no benchmarks yet: bench/run.sh is missing"; fi

# The audit trail's benchmark (API ingest, middleware overhead, a flush of 1M events to S3).
bench-audit: venv-dev
	timeout --foreground --kill-after=60 30m $(BIN)/python -m bench.audit_bench

# PostgreSQL point-in-time recovery (issue 21): the RPO of a host crash over 5 runs, and a
# restore to a moment of ~1 GB + 0.5 GB of WAL beside pg_restore (~10-15 min; bench/README.md).
bench-pitr: venv-dev
	timeout --foreground --kill-after=60 60m $(BIN)/python -m bench.pitr_bench

# Keeps ./var: it holds the API key, the catalog and the local backups.
clean:
	rm -rf $(VENV) build dist site *.egg-info .mypy_cache .ruff_cache .import_linter_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
