# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install smearmil into it. TORCH pins the CPU build that
# lies on this kind of machine's disk; override it elsewhere (any torch >= 2.4).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/smearmil demo

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) smearmil-demo .pytest_cache .hypothesis
