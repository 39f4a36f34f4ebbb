# The two commands a new user needs: `make serve` and `make test`. Each sets up everything.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTHON  ?= python3

.PHONY: install system-deps docker-deps serve test lint typecheck unit docker-test loadtest bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,xgboost-cpu,lightgbm,granian]'
	@touch $(STAMP)

install: $(STAMP)

# promtool and prometheus (Debian's package) for the alert-rule and scrape tests.
system-deps:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing Debian's prometheus package (promtool, prometheus) for the monitoring tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

serve: install
	$(PY) examples/diabetes_demo.py
	$(VENV)/bin/lockgate serve models:/diabetes/Production

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

# Both cores: each test file runs whole on one worker, so module-scoped servers start once.
# PYTEST_WORKERS=0 runs serially.
PYTEST_WORKERS ?= 2
unit: install system-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/pytest -m "not docker" -n $(PYTEST_WORKERS) --dist loadfile --durations=40

# Debian's docker.io (dockerd) and debootstrap, for the real image build and run.
docker-deps:
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { \
	  echo "installing Debian's docker.io and debootstrap for the image test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap; }

docker-test: install docker-deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/pytest -m docker -s tests/test_docker_image.py

test: lint typecheck unit

# A bounded headless locust run of every scenario against the demo; CSV and HTML in loadtests/reports.
loadtest: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) loadtests/run.py --duration $(or $(DURATION),60s)

bench: install
	$(PY) bench/store_bench.py
	$(PY) bench/load_bench.py
	@command -v wrk >/dev/null 2>&1 && command -v h2load >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client; }
	$(PY) bench/serving_bench.py

clean:
	rm -rf $(VENV) .lockgate .mypy_cache .ruff_cache .pytest_cache
