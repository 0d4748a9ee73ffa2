# Every target does its own set-up on a fresh machine (Python venv, npm pieces).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps

.PHONY: all setup test lint unit demo bench clean

all: test

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

$(STAMPS)/npm: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(STAMPS)/venv $(STAMPS)/npm

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup lint
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

unit: $(STAMPS)/venv
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/hashfarm demo

bench: setup
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(STAMPS) $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
