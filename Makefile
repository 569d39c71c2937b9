# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install smearmil into it. TORCH pins the CPU build that
# lies on this kind of machine's disk; override it elsewhere (any torch >= 2.4).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo lint format test test-fast clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/smearmil demo

# lint, format and types: what CI checks before the tests
lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

# one test worker per core (at most 4), each using one thread: the suite is CPU-bound
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses 4

test: lint
	$(PYTEST)

# the quick tier: everything but the end-to-end runs marked slow
test-fast: install
	$(PYTEST) -m "not slow"

clean:
	rm -rf $(VENV) smearmil-demo .pytest_cache .hypothesis .mypy_cache .ruff_cache
