#!/usr/bin/env bash
# `make run`: set up, then run web, workers and beat from the Procfile until Ctrl-C.
#
# scripts/supervise.py runs the Procfile's processes and restarts one that dies (a line
# says which, how, and when it comes back), leaving the others running. Ctrl-C (or
# SIGTERM) reaches the supervisor, which sends SIGTERM to each process group it started
# and SIGKILL to whatever is left 8 s later, then exits 0. The private Redis, if one was
# started, keeps running for the next run; `make stop-redis` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

REDIS_URL="$(scripts/ensure_redis.sh)"
export REDIS_URL
export PORT="${PORT:-8000}"
export PYTHONUNBUFFERED=1
# The Procfile's commands (daphne, celery) come from the venv.
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"

# Fail now, with a sentence, rather than have daphne die and be restarted again and again.
if ! .venv/bin/python -c '
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
' "$PORT" 2>/dev/null; then
    echo "run: port $PORT is in use; stop what uses it or choose another: PORT=8001 make run" >&2
    exit 1
fi

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py seed_demo --admin

cat <<EOF

  ------------------------------------------------------------------
  Paper trading control panel:  http://127.0.0.1:$PORT/
  Log in as admin; the password is in var/admin-password
      (cat var/admin-password)
  Redis: $(.venv/bin/python -m agents.net.redact "$REDIS_URL")   Stop everything with Ctrl-C.
  ------------------------------------------------------------------

EOF

exec .venv/bin/python scripts/supervise.py --procfile Procfile
