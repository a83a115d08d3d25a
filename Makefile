# Two commands do all setup on a fresh machine:
#   make demo   set up .venv, then run the grokking phenomenon end to end with a report
#   make test   set up .venv, then lint (ruff), type-check (mypy) and run the test suite
#   make bench  the performance benchmarks (ARGS="--json bench.json" to keep the figures)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

# torch==2.13.0 first: the local CPU wheel, so that no CUDA build is pulled in.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,hf,tensorboard,mlflow,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/learnscope run grokking

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) learnscope-runs .pytest_cache
