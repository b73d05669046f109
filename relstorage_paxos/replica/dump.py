"""A logical dump of a replica: every table's rows in a canonical order, plus the schema.

Owns: ``logical_dump``. Two replicas that applied the same slots must have equal dumps, page
layout and WAL state aside; the determinism tests and divergence checks compare them.

Must not import: anything that writes.
Called by: any thread, on its own apsw connection (a read transaction gives a consistent
dump while the applier keeps applying).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import apsw

if TYPE_CHECKING:
    from apsw import SQLiteValue  # only in apsw's stubs

LogicalDump = dict[str, list[tuple["SQLiteValue", ...]]]


def logical_dump(db: apsw.Connection) -> LogicalDump:
    """``{table: rows}`` with rows sorted by every column in SQLite's own collation order
    (it orders mixed types deterministically, which Python's sort would refuse), and
    ``sqlite_master`` under its own name. SQLite's internal statistics tables are left out:
    they describe the file, not the data."""
    dump: LogicalDump = {}
    with db:  # one read transaction, so every table comes from the same snapshot
        dump["sqlite_master"] = list(
            db.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master"
                " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
            )
        )
        tables = [
            str(name)
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master"
                " WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for table in tables:
            row = db.execute("SELECT COUNT(*) FROM pragma_table_info(?)", (table,)).fetchone()
            assert row is not None and isinstance(row[0], int), (table, row)
            width = row[0]
            order = ", ".join(str(column) for column in range(1, width + 1))
            dump[table] = list(db.execute(f'SELECT * FROM "{table}" ORDER BY {order}'))
    return dump
