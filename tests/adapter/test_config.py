"""Configuration: the ``<paxos>`` section from ``component.xml`` and ``paxos://`` URIs. A bad
value fails while the configuration loads, with the key named; a history mode other than
the node's fails at open; the adapter it makes validly provides ``IRelStorageAdapter``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import transaction
import ZConfig
import ZODB.config
import zodburi
from hamcrest import assert_that
from nti.testing.matchers import validly_provides
from relstorage.adapters.interfaces import IOIDAllocator, IRelStorageAdapter
from relstorage.storage import RelStorage
from zope.interface.verify import verifyObject

from relstorage_paxos.adapter import PaxosAdapter
from relstorage_paxos.errors import HistoryModeMismatch
from tests.adapter.support import make_node, open_db, zconfig


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_node(tmp_path_factory.mktemp("config"), keep_history=False)


def test_component_xml_ships_with_the_package() -> None:
    text = resources.files("relstorage_paxos").joinpath("component.xml").read_text()
    assert 'implements="relstorage.adapter"' in text
    assert '<key name="driver"' in text


def test_section_settings_reach_the_adapter(hf_dir: Path) -> None:
    db = open_db(
        hf_dir,
        keep_history=False,
        relstorage="commit-lock-timeout 7",
        consistency="local",
        max_lag="2.5",
        lock_lease="4",
        embedded="true",
    )
    try:
        storage = db.storage
        assert isinstance(storage, RelStorage)
        adapter = storage._adapter
        assert isinstance(adapter, PaxosAdapter)
        assert adapter.settings.consistency == "local"
        assert adapter.settings.max_lag_s == 2.5
        assert adapter.settings.lock_lease_s == 4.0
        assert adapter.settings.embedded
        assert adapter.options.commit_lock_timeout == 7
        assert adapter.driver.__name__ == "apsw"
    finally:
        db.close()


def test_the_adapter_validly_provides_its_interface(hf_dir: Path) -> None:
    """Every component is checked against its interface (the OID allocator once was not)."""
    db = open_db(hf_dir, keep_history=False, embedded="true")
    try:
        adapter = db.storage._adapter
        assert verifyObject(IOIDAllocator, adapter.oidallocator)
        assert_that(adapter, validly_provides(IRelStorageAdapter))
    finally:
        db.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("consistency", "eventual"),
        ("max-lag", "-1"),
        ("max-lag", "soon"),
        ("lock-lease", "0"),
        ("embedded", "maybe"),
        ("driver", "sqlite3"),
    ],
)
def test_a_bad_value_fails_at_load_naming_the_key(hf_dir: Path, key: str, value: str) -> None:
    text = zconfig(hf_dir, keep_history=False, **{key.replace("-", "_"): value})
    with pytest.raises((ZConfig.ConfigurationError, ValueError)) as info:
        ZODB.config.databaseFromString(text).close()
    assert key in str(info.value) or value in str(info.value), str(info.value)


def test_a_data_dir_that_is_no_node_fails_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ZConfig.ConfigurationError, match="data-dir"):
        ZODB.config.databaseFromString(zconfig(tmp_path, keep_history=False))


def test_a_history_mode_other_than_the_nodes_is_refused(hf_dir: Path) -> None:
    with pytest.raises(HistoryModeMismatch, match=r"keep-history true.*history-free"):
        open_db(hf_dir, keep_history=True, embedded="true")


def test_paxos_uri_opens_the_node(hf_dir: Path) -> None:
    factory, dbkw = zodburi.resolve_uri(
        f"paxos://{hf_dir}?keep_history=false&consistency=session&embedded=true"
        "&commit_lock_timeout=9"
    )
    storage = factory()
    try:
        adapter = storage._adapter
        assert isinstance(adapter, PaxosAdapter)
        assert adapter.settings.consistency == "session"
        assert adapter.options.commit_lock_timeout == 9
        db = ZODB.DB(storage, **dbkw)
        with db.transaction() as conn:
            conn.root()["uri"] = "yes"
        with db.transaction() as conn:
            assert conn.root()["uri"] == "yes"
        db.close()
    finally:
        storage.close()
        transaction.abort()


@pytest.mark.parametrize(
    ("query", "key"),
    [("consistency=strong", "consistency"), ("max_lag=0", "max-lag")],
)
def test_paxos_uri_rejects_bad_values(hf_dir: Path, query: str, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        zodburi.resolve_uri(f"paxos://{hf_dir}?keep_history=false&{query}")


def test_paxos_uri_needs_a_path(hf_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"data-dir|data directory"):
        zodburi.resolve_uri("paxos://nodehost/x")
