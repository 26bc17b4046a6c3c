"""The ``jobfleet`` command.

``jobfleet worker MODULE:APP`` is Python's: it runs the app's handlers on the Rust runtime.
Every other subcommand (``dev``, ``gateway``, ``queue``, ``enqueue``, ``job``, ``dlq``,
``stats``) is the Rust command line, built into the wheel, so ``pip install jobfleet`` is
all a Python team needs.

``jobfleet worker`` supervises: it runs the worker in a child process, passes signals on to
it, and starts a new child when one exits with code 75 (it recycled itself because a ``def``
handler overran its timeout and could not be interrupted). Any other exit ends the command
with that code. ``--no-supervise`` runs the worker in this process instead (exit code 75
then goes to your own supervisor: systemd, Kubernetes or docker restart it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from . import _native
from .app import App
from .worker import EXIT_RECYCLE

__all__ = ["main"]

log = logging.getLogger("jobfleet.cli")


class _JobFormatter(logging.Formatter):
    """Appends a record's job fields (from ``JobContext.logger``) to the message."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            return text
        return f"{text} [job_id={job_id} queue={getattr(record, 'queue', '?')} attempt={getattr(record, 'attempt', '?')}]"


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if root.handlers:
        return  # the app configured logging itself
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JobFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


def _worker_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobfleet worker",
        description="Work jobs with the handlers of a Python app on the jobfleet Rust runtime.",
        epilog="SIGTERM or Ctrl-C: no new jobs, running ones finish within the grace period; "
        "a second signal hands them back at once. Exit code 75 means the worker recycled "
        "itself (a def handler overran its timeout); the supervisor then starts a new one.",
    )
    parser.add_argument("app", help="MODULE:ATTRIBUTE of the App, e.g. myapp.jobs:app (ATTRIBUTE defaults to app)")
    parser.add_argument(
        "-q",
        "--queue",
        action="append",
        default=None,
        help="a queue to work (repeat or comma-separate; env JOBFLEET_QUEUE); default: every queue with handlers",
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=_env_int("JOBFLEET_CONCURRENCY") or 32,
        help="jobs at once per queue (env JOBFLEET_CONCURRENCY; default 32)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=_env_int("JOBFLEET_THREADS"),
        help="threads for def handlers (env JOBFLEET_THREADS; default min(concurrency, 64))",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=float(os.environ.get("JOBFLEET_GRACE_SECONDS") or 30),
        help="how long running jobs may finish after a shutdown signal (env JOBFLEET_GRACE_SECONDS; default 30)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("JOBFLEET_METRICS_PORT"),
        help="serve Prometheus metrics on this port, all interfaces (env JOBFLEET_METRICS_PORT); queue i uses port+i",
    )
    parser.add_argument("--nats-url", default=None, help="NATS URL(s), overriding the app's")
    parser.add_argument(
        "--recycle-after",
        type=float,
        default=10.0,
        help="seconds a def handler may keep running after its job timed out before the worker recycles (default 10)",
    )
    parser.add_argument("--no-declare", action="store_true", help="do not create missing queues")
    parser.add_argument("--no-supervise", action="store_true", help="run the worker in this process")
    parser.add_argument("--log-level", default=os.environ.get("JOBFLEET_LOG_LEVEL", "info"))
    return parser


def load_app(spec: str) -> App:
    """The App named by ``module:attribute`` (attribute default ``app``), importing the
    module with the current directory on ``sys.path``."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    target: object = module
    for part in (attribute or "app").split("."):
        target = getattr(target, part)
    if not isinstance(target, App):
        raise SystemExit(f"jobfleet worker: {spec} is a {type(target).__name__}, not a jobfleet.App")
    return target


def _queues(values: list[str] | None) -> list[str] | None:
    raw = values if values is not None else [os.environ.get("JOBFLEET_QUEUE", "")]
    names = [name.strip() for value in raw for name in value.split(",") if name.strip()]
    return names or None


def _run_worker(args: argparse.Namespace) -> int:
    _configure_logging(args.log_level)
    _native.init_telemetry(os.environ.get("OTEL_SERVICE_NAME") or "jobfleet-worker-python")
    try:
        app = load_app(args.app)
        if args.nats_url:
            app.nats_url = args.nats_url
        code = app.run_worker(
            _queues(args.queue),
            concurrency=args.concurrency,
            threads=args.threads,
            grace_period=args.grace_seconds,
            metrics_port=args.metrics_port,
            declare=not args.no_declare,
            recycle_after=args.recycle_after,
        )
    finally:
        _native.shutdown_telemetry()
    return code


def _supervise(argv: Sequence[str]) -> int:
    """Runs ``jobfleet worker --no-supervise ...`` in a child process, forwarding signals,
    and replaces the child whenever it exits with code 75."""
    command = [sys.executable, "-m", "jobfleet", "worker", "--no-supervise", *argv]
    signals: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(number: int, frame: FrameType | None) -> None:
        signals.append(number)
        if child is not None and child.poll() is None:
            child.send_signal(number)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        restarts: list[float] = []
        while True:
            # A session of its own: a terminal's Ctrl-C reaches only this process, which
            # forwards it once (the child must not count it twice).
            child = subprocess.Popen(command, start_new_session=True, env={**os.environ, "JOBFLEET_SUPERVISED": "1"})
            if signals:  # one arrived while the child was starting
                child.send_signal(signals[-1])
            while True:
                try:
                    code = child.wait()
                    break
                except InterruptedError:
                    continue
            if code != EXIT_RECYCLE or signals:
                return code if code >= 0 else 128 - code
            # Recycled: start again, slowing down if it keeps happening.
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            pause = min(30.0, 0.5 * 2 ** (len(restarts) - 1)) if len(restarts) > 1 else 0.0
            print(f"jobfleet worker: the worker recycled itself; starting a new one in {pause:.1f}s", file=sys.stderr)
            deadline = time.monotonic() + pause
            while not signals and time.monotonic() < deadline:
                time.sleep(0.05)
            if signals:
                return 0
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _die_with_parent() -> None:
    """Under a supervisor: ask Linux to SIGTERM this process if the supervisor dies."""
    if os.environ.get("JOBFLEET_SUPERVISED") != "1" or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def worker_main(argv: Sequence[str]) -> int:
    args = _worker_parser().parse_args(argv)
    if not args.no_supervise:
        return _supervise(argv)
    _die_with_parent()
    code = _run_worker(args)
    if code == EXIT_RECYCLE:
        # A def handler still holds a thread: exit without waiting for it.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jobfleet`` console script and ``python -m jobfleet``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "worker":
        return worker_main(args[1:])
    # The Rust command line, in this process. Default signal dispositions, as for a
    # native binary: its own handlers (dev, gateway) install themselves.
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    code = _native.run_cli(["jobfleet", *args])
    if args in ([], ["-h"], ["--help"], ["help"]):
        print(
            "\nPython (this package):\n"
            "  worker   Run the handlers of a Python app: jobfleet worker MODULE:APP (see jobfleet worker --help)"
        )
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
