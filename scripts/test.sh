#!/usr/bin/env bash
# Runs every check and test of jobfleet, from nothing: set-up (virtualenv with nats-server,
# nats-py, maturin, pytest), formatting, lints, then all Rust tests, which start their own
# real nats-server processes and run the Python protocol example.
#
# Usage: scripts/test.sh                       everything, as CI runs it
#        scripts/test.sh -p CRATE [--test T] [FILTER]   only those tests (args go to cargo test)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# The dashboard's browser test runs here (setup installs Chromium); JOBFLEET_BROWSER_TESTS=0 skips it.
export JOBFLEET_BROWSER_TESTS="${JOBFLEET_BROWSER_TESTS:-1}"
"$root/scripts/setup.sh"
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$("$root/scripts/nats-server-path.sh")}"
export JOBFLEET_PYTHON="${JOBFLEET_PYTHON:-$root/.venv/bin/python}"

echo "==> cargo fmt --check" >&2
cargo fmt --all --check
echo "==> cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
# The workspace build turns on jobfleet-worker's `failpoints` feature (the fault tests use
# it); lint the crate as users build it, without.
cargo clippy -p jobfleet-worker --all-targets --locked -- -D warnings
echo "==> cargo test" >&2
if [ "$#" -eq 0 ]; then
    # The full log is long (fault workers and handlers log on purpose), and a CI view may show
    # only its end; so on failure the failing tests and their panics are repeated last.
    mkdir -p target
    log="$root/target/test-output.log"
    status=0
    cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "==> cargo test failed; the failing tests (full log: target/test-output.log)" >&2
        "$root/scripts/test-failures.sh" "$log" >&2
        exit "$status"
    fi
    echo "==> pytest python/tests" >&2
    "$root/.venv/bin/python" -m pytest python/tests
else
    cargo test --locked "$@"
fi
