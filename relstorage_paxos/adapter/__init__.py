"""The RelStorage adapter for application processes (DESIGN.md §2, §4, §5).

A subclass of RelStorage's SQLite adapter that reads the node's ``replica.sqlite3`` through
apsw (read-only), proposes every write to the node as log records, and puts the chosen
consistency barrier at ZODB's poll. Configure it with ``%import relstorage_paxos`` and a
``<paxos>`` section inside ``<relstorage>`` (``relstorage_paxos/component.xml``), or with a
``paxos://`` URI (``relstorage_paxos.zodburi_resolver``).

Must not import: ``core``, ``log``, ``runtime`` (an embedded node comes whole from ``server``).
"""

from relstorage_paxos.adapter.adapter import PaxosAdapter
from relstorage_paxos.adapter.settings import CONSISTENCY_LEVELS, AdapterSettings

__all__ = ["CONSISTENCY_LEVELS", "AdapterSettings", "PaxosAdapter"]
