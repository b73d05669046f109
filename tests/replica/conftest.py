"""Fixtures: fresh replicas in a temporary directory, in each history mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relstorage_paxos.replica import Replica


@pytest.fixture(params=[False, True], ids=["hf", "hp"])
def keep_history(request: pytest.FixtureRequest) -> bool:
    value: bool = request.param
    return value


@pytest.fixture
def replica(tmp_path: Path, keep_history: bool) -> Iterator[Replica]:
    """A new replica, in each mode."""
    with Replica.open(tmp_path / "replica.sqlite3", keep_history=keep_history) as fresh:
        yield fresh
