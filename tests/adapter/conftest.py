"""Fixtures the adapter tests share: both history modes, and a node data dir in that mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapter.support import make_node


@pytest.fixture(params=[False, True], ids=["history-free", "history-preserving"])
def keep_history(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def data_dir(tmp_path: Path, keep_history: bool) -> Path:
    return make_node(tmp_path, keep_history=keep_history)
