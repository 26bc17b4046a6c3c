#!/usr/bin/env bash
# Runs the local jobfleet fleet: `jobfleet dev` starts a real nats-server (JetStream, data in
# .jobfleet/) unless NATS_URL names one, declares the demo queues, serves the HTTP gateway on
# 127.0.0.1:8080 and runs the demo and webhook workers, until Ctrl-C.
# Arguments go to `jobfleet dev` (see `jobfleet dev --help`), e.g. --listen 127.0.0.1:9090.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
export NATS_SERVER_BIN="${NATS_SERVER_BIN:-$("$root/scripts/nats-server-path.sh")}"
echo "dev: building jobfleet and the webhook worker (release; the first build takes a few minutes)" >&2
cargo build --quiet --release --locked -p jobfleet-cli -p jobfleet-worker-webhook
exec "$root/target/release/jobfleet" dev "$@"
