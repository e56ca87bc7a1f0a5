# `make demo` and `make test` each set everything up on a fresh machine (a .venv here) and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint fuzz bench-cpu clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch lies on disk here; asking for it first keeps pip from pulling a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[hf,triton,report,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m graphpress.demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow" tests

lint: $(STAMP)
	$(PY) -m ruff check graphpress tests

fuzz: $(STAMP)
	$(PY) benchmarks/fuzz_long.py

clean:
	rm -rf $(VENV)
