#!/usr/bin/env bash
# Runs a benchmark in release mode against a fresh local nats-server (or $NATS_URL) and
# prints jobfleet's figures beside the raw async-nats baseline from the same run.
# Usage: scripts/bench.sh [enqueue|drain] [--jobs N] [--single-jobs N] [--rounds R] [--payload BYTES]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$("$root/scripts/nats-server-path.sh")}"
cargo run --quiet --release -p jobfleet-bench -- "$@"
