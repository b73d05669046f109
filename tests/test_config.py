"""node.toml: round trip, and every bad setting refused with an error naming file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from relstorage_paxos import config
from relstorage_paxos.config import NodeSettings
from relstorage_paxos.errors import DataDirError, SettingsError
from relstorage_paxos.server import init_data_dir

GOOD = NodeSettings(
    cluster_id="prod",
    node_id=2,
    keep_history=True,
    members={1: "127.0.0.1:7101", 2: "127.0.0.1:7102", 3: "[::1]:7103"},
)


def test_round_trip_and_ticks(tmp_path: Path) -> None:
    init_data_dir(tmp_path / "n2", GOOD)
    loaded = config.load(tmp_path / "n2")
    assert loaded == GOOD
    options = loaded.node_options()
    assert options.election_timeout_ticks == 20 and options.heartbeat_interval_ticks == 2


def test_record_limit_sets_the_core_and_the_message_limits(tmp_path: Path) -> None:
    """One setting bounds a record; the gRPC limit leaves it room for its envelope, and a
    peer message carries at most batch-bytes-max of entries unless one alone is larger."""
    settings = dataclasses.replace(GOOD, max_record_bytes=16 << 20, batch_bytes_max=1 << 20)
    init_data_dir(tmp_path / "n2", settings)
    loaded = config.load(tmp_path / "n2")
    assert "max-record-bytes = 16777216" in config.settings_path(tmp_path / "n2").read_text()
    assert loaded.max_record_bytes == 16 << 20
    assert loaded.max_message_bytes == (16 << 20) + config.MESSAGE_HEADROOM_BYTES
    options = loaded.node_options()
    assert options.record_bytes_max == 16 << 20
    assert options.message_bytes_max == options.batch_bytes_max == 1 << 20


def test_init_refuses_a_used_directory(tmp_path: Path) -> None:
    init_data_dir(tmp_path, GOOD)
    with pytest.raises(DataDirError, match="already holds a node"):
        init_data_dir(tmp_path, GOOD)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('node-id = 2\nkeep-history = true\n[members]\n2 = "h:1"\n', "cluster-id: missing"),
        (
            'cluster-id = "a b"\nnode-id = 1\nkeep-history = true\n[members]\n1 = "h:1"\n',
            "cluster-id",
        ),
        ('cluster-id = "c"\nnode-id = 4\nkeep-history = true\n[members]\n1 = "h:1"\n', "node-id"),
        ('cluster-id = "c"\nnode-id = 1\nkeep-history = 1\n[members]\n1 = "h:1"\n', "keep-history"),
        (
            'cluster-id = "c"\nnode-id = 1\nkeep-history = true\n[members]\n1 = "nohost"\n',
            "members.1",
        ),
        (
            'cluster-id = "c"\nnode-id = 1\nkeep-history = true\ntick = 5.0\n'
            '[members]\n1 = "h:1"\n',
            "tick",
        ),
        (
            'cluster-id = "c"\nnode-id = 1\nkeep-history = true\nelection-timeout = 0.1\n'
            '[members]\n1 = "h:1"\n',
            "election-timeout",
        ),
        (
            'cluster-id = "c"\nnode-id = 1\nkeep-history = true\ncolour = 3\n'
            '[members]\n1 = "h:1"\n',
            "colour",
        ),
        (
            'cluster-id = "c"\nnode-id = 1\nkeep-history = true\nmax-record-bytes = 0\n'
            '[members]\n1 = "h:1"\n',
            "max-record-bytes: 0 is not a positive integer",
        ),
        (
            'cluster-id = "c"\nnode-id = 1\nkeep-history = true\n'
            'max-record-bytes = 1073741824\n[members]\n1 = "h:1"\n',
            "max-record-bytes: 1073741824 is over 512 MiB",
        ),
        (
            'cluster-id = "c"\nnode-id = 1\nkeep-history = true\n'
            'max-record-bytes = 1000\n[members]\n1 = "h:1"\n',
            "max-record-bytes: 1000 is below 64 KiB",
        ),
        (
            'cluster-id = "c"\nnode-id = 1\nkeep-history = true\nmax-record-bytes = 1048576\n'
            '[members]\n1 = "h:1"\n',
            "batch-bytes-max: must not be over max-record-bytes",
        ),
        ("cluster-id = \n", "unreadable"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "node.toml").write_text(text)
    with pytest.raises(SettingsError) as raised:
        config.load(tmp_path)
    assert str(tmp_path / "node.toml") in str(raised.value)
    assert key in str(raised.value)


def test_missing_settings_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="relstorage-paxos init"):
        config.load(tmp_path)
