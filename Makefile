# The README's two commands: `make demo` and `make test` (the full suite). All set up a virtualenv first.
# `make test-fast`: the suite less the tests marked slow or subprocess (setup.cfg); `make lint`: ruff (pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: setup
	$(BIN)/python -m experiments.demo

test: setup
	$(BIN)/python -m pytest -q -rxf -n 2 --dist loadfile --durations=15 tests

test-fast: setup
	$(BIN)/python -m pytest -q -rxf -n 2 --dist loadfile -m "not slow and not subprocess" tests

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs data_cache
