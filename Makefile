# The two commands a new user needs: `make serve` and `make test`. Each sets up everything.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTHON  ?= python3

.PHONY: install serve test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

serve: install
	$(PY) examples/diabetes_demo.py
	$(VENV)/bin/lockgate serve models:/diabetes/Production

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

unit: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/pytest

test: lint typecheck unit

bench: install
	$(PY) bench/store_bench.py
	$(PY) bench/load_bench.py

clean:
	rm -rf $(VENV) .lockgate .mypy_cache .ruff_cache .pytest_cache
