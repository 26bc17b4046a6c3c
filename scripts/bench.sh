#!/usr/bin/env bash
# Runs a benchmark in release mode against a fresh local nats-server (or $NATS_URL) and
# prints jobfleet's figures beside the raw async-nats baseline from the same run.
# Usage: scripts/bench.sh [enqueue|drain|gateway] [--jobs N] [--single-jobs N] [--rounds R] [--payload BYTES]
#        scripts/bench.sh durability [--jobs N] [--sync-jobs N] [--r3-sync-jobs N] [--rounds R] [--payload BYTES]
#        scripts/bench.sh python [--jobs N] [--rounds R] [--payload BYTES] [--concurrency C] [--threads T]
# `gateway` drives the HTTP gateway with wrk (installed from Debian's packages when missing).
# `durability` starts its own servers (one node and a 3-node cluster, default fsync and
# `sync_interval: always`) and ignores $NATS_URL; see docs/operations.md for its figures.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$("$root/scripts/nats-server-path.sh")}"
if [ "${1:-}" = "python" ]; then
    # Python handlers (python/bench/drain.py) beside the Rust handler and the raw baseline:
    # an optimized wheel, installed into target/bench-python (.venv keeps the debug build the
    # tests use), and the Rust side of the comparison, both in release mode.
    shift
    (cd python && SOURCE_DATE_EPOCH=315532800 "$root/.venv/bin/maturin" build --release --quiet \
        --locked --interpreter "$root/.venv/bin/python" --out "$root/target/bench-wheels") >&2
    rm -rf "$root/target/bench-python"
    "$root/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$root/target/bench-python" "$(ls -t "$root"/target/bench-wheels/jobfleet-*.whl | head -n 1)"
    cargo build --quiet --release --locked -p jobfleet-py-peer
    export JOBFLEET_BENCH_PYTHONPATH="$root/target/bench-python"
    exec env PYTHONPATH="$JOBFLEET_BENCH_PYTHONPATH" "$root/.venv/bin/python" "$root/python/bench/drain.py" \
        --peer "$root/target/release/jobfleet-py-peer" "$@"
fi
if [ "${1:-}" = gateway ] && ! command -v wrk >/dev/null; then
    echo "bench: installing wrk (Debian package) for the HTTP load" >&2
    (apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }) \
        || { echo "bench: could not install wrk; install it and retry" >&2; exit 1; }
fi
cargo run --quiet --release -p jobfleet-bench -- "$@"
