#!/usr/bin/env bash
# Runs jobfleet locally. Without NATS_URL it starts a real nats-server (JetStream, data in
# .jobfleet/nats) on 127.0.0.1:${JOBFLEET_NATS_PORT:-4222}, monitoring on :8222; with
# NATS_URL it uses that server. Then it provisions the `demo` queue, enqueues demo jobs and
# shows them stored. The server keeps running until Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"

server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

if [ -z "${NATS_URL:-}" ]; then
    port="${JOBFLEET_NATS_PORT:-4222}"
    monitor="${JOBFLEET_NATS_MONITOR_PORT:-8222}"
    data="$root/.jobfleet/nats"
    mkdir -p "$data"
    server="$("$root/scripts/nats-server-path.sh")"
    echo "dev: starting $("$server" --version) on 127.0.0.1:$port (data in .jobfleet/nats, log in .jobfleet/nats.log)" >&2
    "$server" -js -sd "$data" -a 127.0.0.1 -p "$port" -m "$monitor" >"$root/.jobfleet/nats.log" 2>&1 &
    server_pid=$!
    # Wait for /healthz (JetStream ready) with a deadline.
    if ! "$root/.venv/bin/python" - "$monitor" "$server_pid" <<'PY'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
    then
        echo "dev: nats-server did not start; last log lines:" >&2
        tail -n 20 "$root/.jobfleet/nats.log" >&2
        echo "dev: is port $port or $monitor in use? Set JOBFLEET_NATS_PORT / JOBFLEET_NATS_MONITOR_PORT, or NATS_URL to use a running server." >&2
        exit 1
    fi
    export NATS_URL="nats://127.0.0.1:$port"
fi

cargo run --quiet --release -p jobfleet-producer --example demo

if [ -n "$server_pid" ]; then
    echo
    echo "dev: NATS is running at $NATS_URL (monitoring http://127.0.0.1:${JOBFLEET_NATS_MONITOR_PORT:-8222}/jsz?streams=true)."
    echo "dev: press Ctrl-C to stop it; the jobs stay in .jobfleet/nats for the next run."
    wait "$server_pid"
fi
