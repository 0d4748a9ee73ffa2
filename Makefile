# Every target does its own set-up on a fresh machine (Python venv, npm pieces).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps

.PHONY: all setup web-assets test lint unit demo bench clean

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

# The dashboard's browser files come from the npm packages above (pinned in package-lock.json)
# and are copied into a gitignored folder the HTTP server serves as /static/vendor/ (with a
# .gz beside each, which aiohttp sends to browsers that accept gzip).
WEB_VENDOR := src/hashfarm/api/web/static/vendor
WEB_ASSETS := $(WEB_VENDOR)/htmx.min.js $(WEB_VENDOR)/uPlot.iife.min.js $(WEB_VENDOR)/uPlot.min.css

$(WEB_VENDOR)/htmx.min.js: $(STAMPS)/npm
	@mkdir -p $(WEB_VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js $@
	gzip -9kf $@
$(WEB_VENDOR)/uPlot.iife.min.js: $(STAMPS)/npm
	@mkdir -p $(WEB_VENDOR)
	cp node_modules/uplot/dist/uPlot.iife.min.js $@
	gzip -9kf $@
$(WEB_VENDOR)/uPlot.min.css: $(STAMPS)/npm
	@mkdir -p $(WEB_VENDOR)
	cp node_modules/uplot/dist/uPlot.min.css $@
	gzip -9kf $@

# The browser tests drive Debian's chromium (never a downloaded build): installed when absent.
$(STAMPS)/chromium:
	@mkdir -p $(STAMPS)
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -q && sudo apt-get install -y -q chromium; \
	else echo "chromium is missing and this user cannot apt-get install it:" \
	  "the browser tests will skip (run 'apt-get install -y chromium' as root)"; fi
	@touch $@

web-assets: $(WEB_ASSETS)

setup: $(STAMPS)/venv $(STAMPS)/npm web-assets $(STAMPS)/chromium

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
	$(VENV)/bin/hashfarm demo $(DEMO_ARGS)

bench: setup
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(STAMPS) $(VENV) node_modules $(WEB_VENDOR) .pytest_cache .mypy_cache .ruff_cache
