"""ZConfig datatypes for ``component.xml``'s ``<paxos>`` section.

Owns: the section's factory (RelStorage calls ``create(options)`` when it opens the storage)
and the key datatypes ZConfig calls while loading, so a bad value fails at load with the key
named. Named ``zconfig`` rather than ``config``, which holds the node's own settings.
Must not import: ``core``, ``log``, ``runtime``.
Called by: ZConfig and RelStorage, on the thread that loads or opens the configuration.
"""

from __future__ import annotations

from typing import Any

from relstorage.config import BaseConfig  # type: ignore[import-untyped]

from relstorage_paxos.adapter import PaxosAdapter
from relstorage_paxos.adapter.settings import (
    AdapterSettings,
    connect_timeout_seconds,
    consistency_level,
    driver_name,
    lock_lease_seconds,
    max_lag_seconds,
    node_data_dir,
    read_timeout_seconds,
)

__all__ = [
    "PaxosAdapterFactory",
    "connect_timeout_seconds",
    "consistency_level",
    "driver_name",
    "lock_lease_seconds",
    "max_lag_seconds",
    "node_data_dir",
    "read_timeout_seconds",
]


class PaxosAdapterFactory(BaseConfig):  # type: ignore[misc]
    def settings(self) -> AdapterSettings:
        config = self.config
        return AdapterSettings(
            data_dir=config.data_dir,
            consistency=config.consistency,
            max_lag_s=config.max_lag,
            embedded=config.embedded,
            lock_lease_s=config.lock_lease,
            read_timeout_s=config.read_timeout,
            connect_timeout_s=config.connect_timeout,
        )

    def create(self, options: Any) -> Any:
        if options.cache_local_dir:
            # As RelStorage's own SQLite factory: the data is local already.
            del options.cache_local_dir
        return PaxosAdapter(self.settings(), options=options)
