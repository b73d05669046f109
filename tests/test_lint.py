"""Style and typing are part of the build: ruff (lint and format) over everything, and
``mypy --strict`` over the packages CONVENTIONS.md names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STRICT_PACKAGES = ["core", "log", "replica", "transport"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_check() -> None:
    result = run("ruff", "check", "relstorage_paxos", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run("ruff", "format", "--check", "relstorage_paxos", "tests", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    packages = [
        f"relstorage_paxos/{p}" for p in STRICT_PACKAGES if (ROOT / "relstorage_paxos" / p).is_dir()
    ]
    assert "relstorage_paxos/core" in packages
    result = run("mypy", "--no-error-summary", *packages)
    assert result.returncode == 0, result.stdout + result.stderr
