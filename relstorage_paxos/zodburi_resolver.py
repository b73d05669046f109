"""The zodburi resolver for ``paxos://`` URIs, registered in the ``zodburi.resolvers``
entry-point group as ``paxos``.

``paxos:///var/lib/zodb/node1?consistency=session&keep_history=false`` opens a RelStorage on
the node whose data directory is the URI's path. Query keys: this adapter's ``consistency``,
``max_lag``, ``read_timeout``, ``connect_timeout``, ``lock_lease`` and ``embedded``, plus
RelStorage's own (``keep_history``, ``commit_lock_timeout``, ``cache_local_mb``, ...;
RelStorage's ``RelStorageURIResolver`` reads those). Values are checked here, when the URI
is resolved, with the same messages as the ``<paxos>`` section.
Must not import: ``core``, ``log``, ``runtime``.
Called by: ``zodburi.resolve_uri``, on the caller's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relstorage.zodburi_resolver import (  # type: ignore[import-untyped]
    RelStorageURIResolver,
    Resolver,
)

from relstorage_paxos.adapter import AdapterSettings, PaxosAdapter
from relstorage_paxos.adapter.settings import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_LOCK_LEASE_S,
    DEFAULT_MAX_LAG_S,
    DEFAULT_READ_TIMEOUT_S,
    connect_timeout_seconds,
    consistency_level,
    lock_lease_seconds,
    max_lag_seconds,
    node_data_dir,
    read_timeout_seconds,
)


class PaxosAdapterHelper(Resolver):  # type: ignore[misc]
    _string_args = ("consistency", "max_lag", "read_timeout", "connect_timeout", "lock_lease")
    _bool_args = ("embedded",)

    def __call__(
        self, parsed_uri: Any, kw: dict[str, str]
    ) -> tuple[Callable[[Any], PaxosAdapter], dict[str, str]]:
        if parsed_uri.netloc:
            raise ValueError(
                f"paxos URI: {parsed_uri.netloc!r} before the path; name the node's data"
                " directory as an absolute path, paxos:///path/to/data-dir"
            )
        args, unused = self.interpret_kwargs(kw)
        settings = AdapterSettings(
            data_dir=node_data_dir(parsed_uri.path),
            consistency=consistency_level(args.get("consistency", "linearizable")),
            max_lag_s=max_lag_seconds(args.get("max_lag", DEFAULT_MAX_LAG_S)),
            embedded=bool(args.get("embedded", False)),
            read_timeout_s=read_timeout_seconds(args.get("read_timeout", DEFAULT_READ_TIMEOUT_S)),
            connect_timeout_s=connect_timeout_seconds(
                args.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT_S)
            ),
            lock_lease_s=lock_lease_seconds(args.get("lock_lease", DEFAULT_LOCK_LEASE_S)),
        )

        def factory(options: Any) -> PaxosAdapter:
            return PaxosAdapter(settings, options=options)

        return factory, unused


paxos_resolver = RelStorageURIResolver(PaxosAdapterHelper())
