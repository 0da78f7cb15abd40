#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium: the browser tests (tests/e2e) and
# `make screenshots` drive it through Playwright with executable_path=/usr/bin/chromium
# (Playwright's own browser download is never used: nothing may download at run time).
#
# Quick when it is already there (one file check, no apt-get update). Installs it with
# apt-get as root; anyone else is told what to install, and the script fails.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    cat >&2 <<EOF
ensure_chromium: $CHROMIUM is missing; the browser tests need Debian's Chromium.
Install it as root, then run this again:
    sudo apt-get update && sudo apt-get install -y chromium
EOF
    exit 1
fi

command -v apt-get >/dev/null 2>&1 \
    || { echo "ensure_chromium: $CHROMIUM is missing and there is no apt-get; install Chromium at $CHROMIUM" >&2; exit 1; }

echo "ensure_chromium: installing Debian's chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# apt's and dpkg's chatter goes to a log, shown only when the install fails.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Without recommends: they would pull in systemd, udev, avahi and printing tools. A font
# package comes along explicitly so screenshots have real glyphs.
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation; } \
        >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "ensure_chromium: apt-get install chromium failed (see above)" >&2
    exit 1
fi

[ -x "$CHROMIUM" ] || { echo "ensure_chromium: apt-get finished but $CHROMIUM is still missing" >&2; exit 1; }
echo "ensure_chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed" >&2
