#!/usr/bin/env bash
# `make test` / `make test-pg`: set up like `make run`, then ruff and the whole pytest suite.
#
#   scripts/test.sh [--no-lint] [pytest args...]
#
# Each run gets its own Redis key prefix (test-<pid>-<random>:) so runs can share one Redis
# with each other and with a running `make run`; the suite cleans up only its own keys.
# Set TEST_REDIS_PREFIX to choose it.
set -euo pipefail
cd "$(dirname "$0")/.."

lint=1
if [ "${1:-}" = "--no-lint" ]; then lint=0; shift; fi

scripts/bootstrap.sh

REDIS_URL="$(scripts/ensure_redis.sh)"
export REDIS_URL
export REDIS_PREFIX="${TEST_REDIS_PREFIX:-test-$$-$RANDOM$RANDOM:}"
export PYTHONUNBUFFERED=1
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"

if [ "$lint" = 1 ]; then
    echo "test: ruff check . && ruff format --check ." >&2
    .venv/bin/ruff check .
    .venv/bin/ruff format --check . || { echo "test: run '.venv/bin/ruff format .'" >&2; exit 1; }
fi

# URLs are shown without their passwords.
shown_db="$(if [ -n "${DATABASE_URL:-}" ]; then .venv/bin/python -m agents.net.redact "$DATABASE_URL"; else echo "sqlite default"; fi)"
shown_redis="$(.venv/bin/python -m agents.net.redact "$REDIS_URL")"
echo "test: pytest (DATABASE_URL=$shown_db, REDIS_URL=$shown_redis, REDIS_PREFIX=$REDIS_PREFIX)" >&2
# A run that collects no test fails (pytest exits 5): an empty suite is not a pass.
exec .venv/bin/python -m pytest "$@"
