"""ZODB 6 named its storage-test mixin methods ``test*``; RelStorage 4.3's suite builder still
loads only ``check*`` (``loader.testMethodPrefix = 'check'``, relstorage/tests/util.py), so
without help the ZODB conformance tests silently do not run (zopefoundation/ZODB#377;
notes/relstorage-internals.md §6.1).

Owns: ``add_zodb6_check_aliases``, which gives every class defined in the ZODB mixin modules
RelStorage's test bases inherit a ``checkX = testX`` alias wherever the class itself does not
define ``checkX``. Aliasing in each class's own namespace keeps the MRO intact: RelStorage's
overrides (``checkPackAllRevisions``…) and its ``super().checkX()`` wrappers still win and
still reach the ZODB original, which loading ``test*`` as well would not (it would run the
ZODB originals RelStorage overrides on purpose).
Must not import: ``relstorage_paxos``: the shim is the same for the stock anchor and for us.
Called by: each conformance suite's ``test_suite()``, before the suite is built; idempotent.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Final

ZODB_MIXIN_MODULES: Final = (
    "ZODB.tests.racetest",
    "ZODB.tests.BasicStorage",
    "ZODB.tests.ConflictResolution",
    "ZODB.tests.MTStorage",
    "ZODB.tests.PackableStorage",
    "ZODB.tests.PersistentStorage",
    "ZODB.tests.ReadOnlyStorage",
    "ZODB.tests.Synchronization",
    "ZODB.tests.TransactionalUndoStorage",
    "ZODB.tests.IteratorStorage",
    "ZODB.tests.RevisionStorage",
    "ZODB.tests.HistoryStorage",
)
"""The ZODB.tests modules whose classes RelStorage's check* classes inherit (§6.1)."""

_MARK: Final = "__zodb6_check_aliases__"

_added: list[str] = []


def alias_names(cls: type) -> dict[str, str]:
    """``{checkX: testX}`` for the test methods ``cls`` itself defines without a checkX."""
    own = vars(cls)
    aliases: dict[str, str] = {}
    for name, value in own.items():
        if not (name.startswith("test") and callable(value)):
            continue
        alias = "check" + name[len("test") :]
        if alias not in own:
            aliases[alias] = name
    return aliases


def add_zodb6_check_aliases() -> int:
    """Install the aliases once per process; return how many were added in all (the same
    number on every call, so a suite can print and check it)."""
    if not _added:
        for module_name in ZODB_MIXIN_MODULES:
            module = importlib.import_module(module_name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ != module_name or vars(cls).get(_MARK):
                    continue
                for alias, name in sorted(alias_names(cls).items()):
                    setattr(cls, alias, vars(cls)[name])
                    _added.append(f"{module_name}.{cls.__qualname__}.{alias}")
                setattr(cls, _MARK, True)
    return len(_added)


def added_aliases() -> list[str]:
    """The dotted names of the aliases installed so far (for reports)."""
    return list(_added)
