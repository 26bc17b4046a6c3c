"""The package's typing: the native module's stubs match it, and the package, examples and
tests type-check under mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_the_stubs_match_the_native_module(tmp_path: Path) -> None:
    # From elsewhere than python/, so that the installed package (with its built module) is
    # the one imported.
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "jobfleet._native"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_type_checks_strictly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=PYTHON_DIR, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
