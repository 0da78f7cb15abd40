#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install requirements-dev.lock into it: every package,
# transitive ones included, at the version and with the hashes the lock names
# (pip --require-hashes), so a tampered or swapped download fails the install.
# requirements*.txt are the human lists the locks come from (`make lock`).
#
# Re-installs only when the lock (or the interpreter) changed: a stamp file in .venv
# holds a checksum of them, so a repeated `make run` costs well under a
# second here. Safe to run from several shells at once (a lock serialises installs).
#
# Env: PYTHON (default python3) picks the interpreter used to create the venv.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.requirements.sha256"

die() { echo "bootstrap: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 \
    || die "'$PYTHON' not found. Install Python 3.11 or newer (or set PYTHON=/path/to/python3.11)."
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed; '$PYTHON' is $("$PYTHON" -c 'import platform; print(platform.python_version())')." \
           "Set PYTHON=/path/to/python3.11 (or newer)."

mkdir -p var

# One installer at a time (flock is Linux-only; elsewhere concurrent runs are just unlocked).
if command -v flock >/dev/null 2>&1 && [ -z "${_BOOTSTRAP_LOCKED:-}" ]; then
    exec env _BOOTSTRAP_LOCKED=1 flock -o var/.bootstrap.lock "$SELF" "$@"
fi

# A venv whose interpreter is gone or broken (Python upgraded, folder copied) is rebuilt.
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "bootstrap: $VENV is broken or too old; recreating it" >&2
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating $VENV with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')" >&2
    "$PYTHON" -m venv "$VENV" || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3-venv)"
fi

# Checksum of what decides the installed set: the lock and the interpreter.
want="$("$VENV/bin/python" - <<'EOF'
import hashlib, sys
h = hashlib.sha256(sys.version.encode())
for name in ("requirements-dev.lock",):
    with open(name, "rb") as f:
        h.update(name.encode() + b"\0" + f.read())
print(h.hexdigest())
EOF
)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
    echo "bootstrap: installing requirements-dev.lock into $VENV" >&2
    rm -f "$STAMP"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --require-hashes --no-deps \
        -r requirements-dev.lock \
        || die "pip install failed (see above)"
    echo "$want" > "$STAMP"
fi

# The browser tests' Chromium (Debian's); without it only they fail, so setup goes on.
scripts/ensure_chromium.sh || echo "bootstrap: continuing without Chromium: tests/e2e and 'make screenshots' need it" >&2
