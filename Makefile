# Paper trading control panel. Needs Python >= 3.11 and nothing else: everything else is
# installed into .venv, and a private Redis is started under var/ when none answers.
#
#   make run        set up, migrate, seed the demo, run web + workers + beat, restarting any
#                   that dies (scripts/supervise.py; Ctrl-C stops all)
#   make test       set up, ruff, then the whole pytest suite (ARGS="-k name" to narrow it)
#
# Settings come from the environment (see README.md, Configuration).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: help run test test-pg lint venv lock redis stop-redis clean distclean screenshots bench

help:
	@echo "make run         set up and run the panel at http://127.0.0.1:$${PORT:-8000}/ (Ctrl-C stops)"
	@echo "make test        set up, ruff, then the whole test suite (ARGS='-k name' to narrow)"
	@echo "make test-pg     the test suite again against PostgreSQL (DATABASE_URL, default $(PG_TEST_URL))"
	@echo "make lint        ruff check . and ruff format --check ."
	@echo "make screenshots docs/screenshots/*.png from a throwaway stack (Chromium, light and dark)"
	@echo "make bench       every benchmark in bench/, then bench/RESULTS.md (ARGS=--quick: a smoke pass)"
	@echo "make venv        create/update .venv only (from requirements-dev.lock)"
	@echo "make lock        requirements*.lock from requirements*.txt (every package, with hashes)"
	@echo "make redis       print a REDIS_URL that answers (starts the private Redis if needed)"
	@echo "make stop-redis  stop the private Redis under var/redis"
	@echo "make clean       stop the private Redis, remove var/ (database, logs, secrets)"
	@echo "make distclean   clean, and remove .venv"

run:
	@scripts/run.sh

test:
	@scripts/test.sh $(ARGS)

# The database-touching tests against PostgreSQL: the same suite, no ruff. pytest-django
# creates (and drops) a test database of its own, so the user needs CREATEDB.
test-pg:
	@DATABASE_URL="$${DATABASE_URL:-$(PG_TEST_URL)}" scripts/test.sh --no-lint $(ARGS)

lint: venv
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

venv:
	@scripts/bootstrap.sh

# The locks hold every package for every platform and Python >= 3.11 (--universal), each
# with the hashes of all its files; edit requirements*.txt, then run this.
LOCK = .venv/bin/uv pip compile --quiet --universal --generate-hashes --python-version 3.11
lock: venv
	$(LOCK) requirements.txt -o requirements.lock
	$(LOCK) requirements-dev.txt -o requirements-dev.lock

# Its own SQLite file, Redis prefix, worker and server; everything is removed afterwards.
screenshots: venv
	@REDIS_URL="$$(scripts/ensure_redis.sh)" .venv/bin/python scripts/screenshots.py

# Each benchmark on its own database, Redis prefix and temporary folder; PostgreSQL runs
# (trading throughput) create and drop a bench_<random> database on BENCH_PG_URL.
bench: venv
	@REDIS_URL="$$(scripts/ensure_redis.sh)" BENCH_PG_URL="$${BENCH_PG_URL:-$(PG_TEST_URL)}" \
		.venv/bin/python bench/run_all.py $(ARGS)

redis:
	@scripts/ensure_redis.sh

stop-redis:
	@scripts/ensure_redis.sh --stop

clean:
	@if [ -f var/redis/redis.pid ]; then scripts/ensure_redis.sh --stop; fi
	rm -rf var

distclean: clean
	rm -rf .venv
