"""The examples run as documented: the README's quick start, and the example app that
docker-compose.yml's Python worker runs."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import jobfleet

from conftest import NatsServer, finished

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_quickstart_runs(nats: NatsServer) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env={"JOBFLEET_NATS_URL": nats.url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("succeeded after 2 attempts"), result.stdout


def test_the_example_app_handles_each_kind_of_job(nats: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    jobs = importlib.import_module("jobfleet_example.jobs")
    app: jobfleet.App = jobs.app
    app.nats_url = nats.url
    try:
        with app.start_worker():
            hello = app.enqueue("python", {"message": "hi"})
            flaky = app.enqueue("python", {"message": "again", "flaky": True})
            failing = app.enqueue("python", {"fail": True})
            report = jobs.build_report.enqueue({"rows": 10})
            done = {job.id: finished(app, job.id) for job in (hello, flaky, failing, report)}
    finally:
        app.close()
    assert done[hello.id].event == "succeeded" and done[hello.id].result == {"echo": "hi", "attempt": 1}
    assert done[flaky.id].event == "succeeded" and done[flaky.id].result == {"echo": "again", "attempt": 2}
    assert done[failing.id].event == "dead_lettered" and done[failing.id].error == "asked to fail"
    assert done[report.id].event == "succeeded"
