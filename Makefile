# Imagineer: `make run` sets everything up and starts the app; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ADDR   ?= 127.0.0.1:8000

.PHONY: run test setup migrate chromium lint bench clean demo apicheck scaleout

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check ".[ml,dev]"
	@touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py ensure_admin
	$(PY) manage.py serve --addr $(ADDR)

# The browser tests drive Debian's Chromium through Playwright (no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "chromium is missing: sudo apt-get install chromium (browser tests will skip)"; fi; }

# One pytest-xdist worker per core (TEST_WORKERS=0 runs in one process); each
# worker has its own test database, var/ and share of torch's threads
# (imagineer_project.testing). The slowest tests are listed at the end.
TEST_WORKERS ?= auto
test: setup chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=15

# PostgreSQL (127.0.0.1:5432, user postgres), a Redis server and S3 (moto) with one
# gunicorn web process, two general workers and a gpu worker, each its own "host":
# the pipeline through the API, files in S3 only, a worker killed mid-crawl
# (docs/benchmarks.md, "Scale-out"), and every other test marked scaleout (the full
# `serve --production` start). Skips, saying why, when a part is missing.
scaleout: setup
	$(PY) -m pytest -m scaleout -p no:randomly -q

# The whole pipeline offline on the CPU with a tiny model: sample site -> scrape ->
# dataset -> LoRA -> generation (labels with Claude too when ANTHROPIC_API_KEY is set),
# in its own library, var/demo/, unless IMAGINEER_VAR_DIR names another.
DEMO_VAR_DIR := $(or $(IMAGINEER_VAR_DIR),var/demo)
demo: setup
	IMAGINEER_VAR_DIR=$(DEMO_VAR_DIR) $(PY) manage.py migrate --noinput
	IMAGINEER_VAR_DIR=$(DEMO_VAR_DIR) $(PY) manage.py ensure_admin
	IMAGINEER_VAR_DIR=$(DEMO_VAR_DIR) $(PY) manage.py demo

# schemathesis against the live app on a free loopback port, with a fresh
# SQLite database, as staff and anonymously (docs/api.md).
apicheck: setup
	$(PY) bin/apicheck

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) bench/run.py
	$(PY) bench/dedup.py
	$(PY) bench/scrape.py
	$(PY) bench/download.py --fixed  # the 500-image scrape with the old fixed delay takes ~9 min
	$(PY) bench/label.py
	$(PY) bench/generate.py --threads 1
	$(PY) bench/ingest.py
	$(PY) bench/pages.py  # needs PostgreSQL on 127.0.0.1:5432

clean:
	rm -rf $(VENV) var/cache
