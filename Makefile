# The two commands of the README: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test test-fast install lint docs bench

$(BIN)/touchpoints: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/touchpoints

demo: install
	$(BIN)/touchpoints demo

# two pytest-xdist workers, one module each at a time (module fixtures such as a running
# `serve` stay in one process); each worker has its own Prefect test server and databases
TEST_WORKERS ?= 2

test: install
	bash .ci/browser-deps
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope

test-fast: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope -m "not e2e and not browser"

lint: install
	$(BIN)/ruff check flows tests bench

docs: install
	$(BIN)/touchpoints docs -o docs/reference.md

bench: install  # the fan-out benchmark; BENCH_ARGS="--customers 2000 --repeats 3" to vary it
	$(BIN)/python bench/run.py $(BENCH_ARGS)
