"""Nodes and databases for the adapter tests: a one-node cluster made in a temporary
directory (run embedded in the test process), and ZODB databases opened from ZConfig text
exactly as an application would."""

from __future__ import annotations

from pathlib import Path

import ZODB
import ZODB.config

from relstorage_paxos.config import NodeSettings
from relstorage_paxos.server import init_data_dir
from tests.integration.processes import free_ports

FAST = {"tick_s": 0.01, "heartbeat_interval_s": 0.03, "election_timeout_s": 0.15}


def make_node(root: Path, *, keep_history: bool, name: str = "node1") -> Path:
    """A fresh one-node cluster's data directory (not running)."""
    (port,) = free_ports(1)
    data_dir = root / name
    init_data_dir(
        data_dir,
        NodeSettings(
            cluster_id=f"adapter-{name}",
            node_id=1,
            keep_history=keep_history,
            members={1: f"127.0.0.1:{port}"},
            **FAST,
        ),
    )
    return data_dir


def zconfig(data_dir: Path, *, keep_history: bool, relstorage: str = "", **paxos: object) -> str:
    """A ``<zodb>`` configuration with a ``<paxos>`` section; keyword names use _ for -."""
    keys = "\n".join(f"    {k.replace('_', '-')} {v}" for k, v in paxos.items())
    return f"""
%import relstorage_paxos
<zodb>
  <relstorage>
    keep-history {"true" if keep_history else "false"}
    {relstorage}
    <paxos>
      data-dir {data_dir}
{keys}
    </paxos>
  </relstorage>
</zodb>
"""


def open_db(
    data_dir: Path, *, keep_history: bool, relstorage: str = "", **paxos: object
) -> ZODB.DB:
    text = zconfig(data_dir, keep_history=keep_history, relstorage=relstorage, **paxos)
    return ZODB.config.databaseFromString(text)
