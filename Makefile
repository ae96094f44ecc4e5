# The two commands in the README do all set-up on a fresh machine (Python 3.11+):
#   make demo   create .venv, install, start zhuge, run a short demo, stop
#   make test   create .venv with dev extras, run the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# The CPU build of PyTorch, for the LSTM forecaster's tests; an unpinned torch pulls a CUDA build.
TORCH_CPU ?= torch==2.13.0

.PHONY: demo test lint format bench-queue chaos clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("zhuge needs Python 3.11 or newer; set PYTHON=python3.11") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	bash scripts/demo.sh

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet '$(TORCH_CPU)'
	touch $@

# Two pytest processes (pytest-xdist): the suite waits on subprocesses, Dask and databases
# much of its time, so two share two cores well (about 13 min instead of 23 on 2 cores).
# Each process has its own PostgreSQL schema and temporary folders. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench-queue: $(STAMP)
	$(BIN)/python benchmarks/queue.py

# The chaos run (docs/operations.md): a private PostgreSQL (initdb/pg_ctl), 2 zhuge up and an
# API-only process, 4 zhuge workers, 3000 jobs under seeded faults for up to 10 minutes.
# Its short form is tests/chaos/test_chaos.py, part of make test.
CHAOS_ARGS ?= --jobs 3000 --fault-seconds 600 --max-faults 400 --seed 1
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos.driver $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .zhuge .zhuge-demo .pytest_cache .ruff_cache
