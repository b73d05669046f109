"""NodeServer's housekeeping reports, driven through its real status (a node that is not
started keeps the status it was given)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from relstorage_paxos import server as server_module
from relstorage_paxos.config import NodeSettings
from relstorage_paxos.server import NodeServer, init_data_dir
from tests.integration.processes import free_ports


def test_catch_up_progress_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    (port,) = free_ports(1)
    init_data_dir(
        tmp_path,
        NodeSettings(
            cluster_id="c", node_id=1, keep_history=False, members={1: f"127.0.0.1:{port}"}
        ),
    )
    node = NodeServer(tmp_path)
    try:
        monkeypatch.setattr(server_module, "CATCH_UP_REPORT_S", 0.0)
        caplog.set_level(logging.INFO, logger="relstorage_paxos.server")
        status = node.runtime.status
        node.runtime.status = dataclasses.replace(status, known_chosen_slot=5000, applied_slot=10)
        node._report_catch_up()  # notes where catching up started
        node.runtime.status = dataclasses.replace(status, known_chosen_slot=5000, applied_slot=2500)
        node._report_catch_up()
        assert "catching up: applied slot 2500 of 5000 chosen (2500 to go)" in caplog.text
        node.runtime.status = dataclasses.replace(status, known_chosen_slot=5000, applied_slot=5000)
        node._report_catch_up()
        assert "caught up at slot 5000" in caplog.text
    finally:
        node.stop()
