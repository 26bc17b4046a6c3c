# syntax=docker/dockerfile:1
#
# jobfleet images. Targets:
#
#   jobfleet (the default, last stage)  every Rust binary on Debian slim, as a non-root user:
#       jobfleet                    the CLI: `jobfleet gateway`, `jobfleet queue declare`, ...
#       jobfleet-worker-webhook     delivers the HTTP requests its jobs describe
#       jobfleet-worker-noop        does nothing: demos, smoke and load tests
#   python-worker  the Python package (a maturin wheel built from python/) on Debian's
#                  Python, run as `jobfleet worker <module>:<app>`. Built only when asked
#                  for, so the Rust image never depends on it.
#
#   docker build -t jobfleet:dev .
#   docker build --target python-worker -t jobfleet-python:dev .
#   docker compose build                  both, as docker-compose.yml names them
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts: the cargo
# registry and target directory persist between builds, so a rebuild after a code change
# compiles only what changed.

ARG RUST_VERSION=1.89
ARG DEBIAN_RELEASE=bookworm

# --- Rust build --------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS rust-build
WORKDIR /src
COPY . .
# The target directory is a cache mount (not part of the image), so the binaries are copied
# out of it within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p jobfleet-cli -p jobfleet-worker-webhook -p jobfleet-worker-noop \
    && mkdir -p /out \
    && cp target/release/jobfleet \
          target/release/jobfleet-worker-webhook \
          target/release/jobfleet-worker-noop \
          /out/

# --- Runtime base: Debian slim, CA certificates, an unprivileged user ---------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 jobfleet \
    && useradd --system --uid 10001 --gid jobfleet --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin jobfleet

# --- Python wheel ------------------------------------------------------------------------
# Built with Debian's Python, the same interpreter the python-worker image runs.
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS python-build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/maturin \
    && /opt/maturin/bin/pip install --no-cache-dir "maturin>=1.9.4,<2"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cd python \
    && /opt/maturin/bin/maturin build --release --locked --interpreter python3 --out /wheels

# --- Python worker -----------------------------------------------------------------------
FROM runtime AS python-worker
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=python-build,source=/wheels,target=/wheels \
    python3 -m venv /opt/jobfleet \
    && /opt/jobfleet/bin/pip install --no-cache-dir /wheels/*.whl
# The example app (`jobfleet_example.jobs:app`) that docker-compose.yml runs. python/examples/
# comes with the Python package (issue 5); mount or copy your own app module the same way.
COPY python/examples/ /app/
ENV PATH=/opt/jobfleet/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER 10001:10001
CMD ["jobfleet", "worker", "jobfleet_example.jobs:app"]

# --- Rust binaries (default target) -------------------------------------------------------
FROM runtime AS jobfleet
COPY --from=rust-build /out/ /usr/local/bin/
USER 10001:10001
# The gateway's HTTP port (API, /livez, /readyz, /metrics) and the workers' metrics port
# as docker-compose.yml sets them.
EXPOSE 8080 9464
CMD ["jobfleet", "--help"]
