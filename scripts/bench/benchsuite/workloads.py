"""The workloads, a to j, each a function of the systems it runs on and the sizes.

Every workload interleaves its systems within a round (the order rotates from one round to
the next) and reports, per system, the median over rounds of each round's figure, so that
the drift of this noisy machine hits every system alike. Latencies are in microseconds.

Functions named ``w_*`` run in a worker process (``workers.Pool``) or, for a system only one
process may open (FileStorage, an embedded node), in a thread of the suite's process; their
first argument is the cache of open databases, by ZConfig text.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.util import setup_testing_defaults

import transaction
import ZODB
import ZODB.config
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from transaction.interfaces import TransientError
from ZODB.POSException import ConflictError

from benchsuite.systems import System, wait_until


@dataclass(frozen=True)
class Sizes:
    rounds: int
    commits: int  # a, per round and system
    writers: tuple[int, ...]  # b
    seconds: float  # b, per run
    bank_seconds: float  # c, per run
    accounts: int  # c
    objects: int  # d, per transaction
    load_objects: int  # e, objects in the database
    loads: int  # e, per round and system
    reads: int  # f, per round and system
    requests: int  # g, per round and system
    failovers: int  # h

    @classmethod
    def quick(cls) -> Sizes:
        return cls(1, 30, (1, 4, 8), 0.25, 0.4, 100, 100, 200, 300, 40, 40, 1)

    @classmethod
    def full(cls) -> Sizes:
        return cls(3, 300, (1, 4, 8), 1.5, 3.0, 100, 1000, 5000, 3000, 400, 400, 3)


# -- helpers ------------------------------------------------------------------------------


def open_db(zconfig: str) -> ZODB.DB:
    return ZODB.config.databaseFromString(zconfig)


def _db(dbs: dict[str, Any], zconfig: str) -> ZODB.DB:
    if zconfig not in dbs:
        dbs[zconfig] = open_db(zconfig)
    return dbs[zconfig]


def w_open(dbs: dict[str, Any], zconfig: str) -> int:
    _db(dbs, zconfig)
    return os.getpid()


def w_close_all(dbs: dict[str, Any]) -> None:
    for db in dbs.values():
        with contextlib.suppress(Exception):
            db.close()
    dbs.clear()


def percentile_us(samples_s: list[float], q: float) -> float:
    ordered = sorted(samples_s)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def latency_summary(rounds: list[list[float]], keep_samples: bool = False) -> dict[str, Any]:
    """Medians over rounds of each round's p50, p99 and p99.9 (µs)."""
    summary: dict[str, Any] = {
        key: statistics.median(percentile_us(r, q) for r in rounds)
        for key, q in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))
    }
    summary["samples"] = sum(len(r) for r in rounds)
    summary["round_p50"] = [percentile_us(r, 0.5) for r in rounds]
    if keep_samples:
        summary["samples_us"] = [round(s * 1e6, 1) for r in rounds for s in r]
    return summary


def interleaved(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name) pairs, every name once per round, the order rotating each round."""
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            yield r, name


def commit_retrying(
    tm: transaction.TransactionManager, change: Callable[[], None], limit: int = 1000
) -> tuple[int, int]:
    """Run ``change`` in a transaction until it commits: (conflicts, other transient errors)
    seen first, as ``transaction.manager.attempts`` would retry them."""
    conflicts = transient = 0
    while True:
        try:
            tm.begin()
            change()
            tm.commit()
            return conflicts, transient
        except TransientError as exc:
            tm.abort()
            if isinstance(exc, ConflictError):
                conflicts += 1
            else:
                transient += 1
                time.sleep(0.01)
            assert conflicts + transient < limit, (conflicts, transient, exc)


def setup_keys(db: ZODB.DB, values: dict[str, Callable[[], Any]]) -> None:
    """Create root[key] = factory() for each key, once (retried on conflicts)."""
    tm = transaction.TransactionManager()
    conn = db.open(tm)

    def change() -> None:
        root = conn.root()
        for key, factory in values.items():
            if key not in root:
                root[key] = factory()

    commit_retrying(tm, change)
    conn.close()


def run_threads(target: Callable[..., Any], per_thread: list[dict[str, Any]]) -> list[Any]:
    """Run ``target(**kwargs)`` in one thread per kwargs; their results, in order."""
    results: list[Any] = [None] * len(per_thread)
    errors: list[BaseException] = []

    def run(i: int, kwargs: dict[str, Any]) -> None:
        try:
            results[i] = target(**kwargs)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, kw)) for i, kw in enumerate(per_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class Databases:
    """Databases the suite's own process opens for one workload; closed together."""

    def __init__(self) -> None:
        self.dbs: dict[str, ZODB.DB] = {}

    def open(self, key: str, zconfig: str) -> ZODB.DB:
        self.dbs[key] = open_db(zconfig)
        return self.dbs[key]

    def __getitem__(self, key: str) -> ZODB.DB:
        return self.dbs[key]

    def close(self) -> None:
        for db in self.dbs.values():
            with contextlib.suppress(Exception):
                db.close()
        self.dbs.clear()

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- a. one-object commit latency ----------------------------------------------------------

A_SYSTEMS = [
    "paxos-leader",
    "paxos-follower",
    "embedded",
    "rs-sqlite",
    "filestorage",
    "zeo",
    "postgres",
]


def commit_latency(systems: dict[str, System], sizes: Sizes) -> dict[str, Any]:
    names = [n for n in A_SYSTEMS if n in systems]
    commits: dict[str, list[list[float]]] = {n: [] for n in names}
    txns: dict[str, list[list[float]]] = {n: [] for n in names}
    with Databases() as dbs:
        conns = {}
        for name in names:
            db = dbs.open(name, systems[name].zconfig())
            key = f"a:{name}"
            setup_keys(db, {key: lambda: PersistentMapping(n=0)})
            tm = transaction.TransactionManager()
            conns[name] = (tm, db.open(tm), key)
            _commit_samples(*conns[name], count=10)  # warm-up
        for _, name in interleaved(names, sizes.rounds):
            c, t = _commit_samples(*conns[name], count=sizes.commits)
            commits[name].append(c)
            txns[name].append(t)
    return {
        "title": "a. 1-object commit latency",
        "unit": "µs",
        "better": "lower",
        "note": "time of transaction.commit() after changing one small PersistentMapping; "
        "txn_p50 also counts begin (the linearizable read barrier for paxos)",
        "systems": {
            n: {
                **latency_summary(commits[n], keep_samples=True),
                "txn_p50": latency_summary(txns[n])["p50"],
            }
            for n in names
        },
    }


def _commit_samples(
    tm: transaction.TransactionManager, conn: Any, key: str, count: int
) -> tuple[list[float], list[float]]:
    commit_s, txn_s = [], []
    for _ in range(count):
        began = time.perf_counter()
        tm.begin()
        conn.root()[key]["n"] += 1
        started = time.perf_counter()
        tm.commit()
        ended = time.perf_counter()
        commit_s.append(ended - started)
        txn_s.append(ended - began)
    return commit_s, txn_s


# -- b. throughput with 1/4/8 writers --------------------------------------------------------

B_SYSTEMS = ["paxos-3node", "embedded", "rs-sqlite", "filestorage", "zeo", "postgres"]
OVERLAP = 0.1


def w_writer(
    dbs: dict[str, Any],
    zconfig: str,
    key: str,
    own: str,
    overlap: float,
    start_at: float,
    duration_s: float,
    seed: int,
) -> dict[str, float]:
    """Commit one-object transactions until ``start_at + duration_s``: the writer's own
    object, or with probability ``overlap`` the one object all writers share."""
    db = _db(dbs, zconfig)
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    tm.begin()
    objects = conn.root()[key]
    rng = random.Random(seed)
    commits = conflicts = transient = 0
    wait_until(start_at)
    stop = start_at + duration_s
    while time.time() < stop:
        target = "shared" if rng.random() < overlap else own

        def change(target: str = target) -> None:
            objects[target]["n"] += 1

        c, t = commit_retrying(tm, change)
        commits += 1
        conflicts += c
        transient += t
    elapsed = time.time() - start_at
    conn.close()
    return {"commits": commits, "conflicts": conflicts, "transient": transient, "elapsed": elapsed}


def _spread(
    system: System, pool: Any, count: int, target: str, per: Callable[[int], dict[str, Any]]
) -> list[dict[str, float]]:
    """Run ``count`` copies of a w_* function: worker processes on the system's sites
    (worker i on site i), or threads of this process for a single-process system."""
    start_at = time.time() + 0.2
    kwargs = [
        {"zconfig": system.zconfig(i), "start_at": start_at, "seed": i, **per(i)}
        for i in range(count)
    ]
    if system.multi_process:
        assert count <= len(pool), (count, len(pool))
        return pool.run_all(list(range(count)), target, kwargs)  # type: ignore[no-any-return]
    from benchsuite import workloads

    return run_threads(lambda **kw: getattr(workloads, target)(_SHARED, **kw), kwargs)


_SHARED: dict[str, Any] = {}
"""The suite process's databases of single-process systems, by ZConfig text (threads)."""


def _prepare(system: System, pool: Any, count: int, dbs: Databases) -> ZODB.DB:
    """The suite's own database of ``system``; every worker that will run on it opens its
    site's database first, so that opening is not timed."""
    db = dbs.open(system.name, system.zconfig())
    if system.multi_process:
        pool.run_all(
            list(range(count)), "w_open", [{"zconfig": system.zconfig(i)} for i in range(count)]
        )
    else:
        _SHARED[system.zconfig()] = db
    return db


def throughput(systems: dict[str, System], pool: Any, sizes: Sizes) -> dict[str, Any]:
    names = [n for n in B_SYSTEMS if n in systems]
    most = max(sizes.writers)
    runs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    with Databases() as dbs:
        for name in names:
            db = _prepare(systems[name], pool, most, dbs)
            setup_keys(
                db,
                {
                    f"b:{name}": lambda: PersistentMapping(
                        {f"w{i}": PersistentMapping(n=0) for i in range(most)}
                        | {"shared": PersistentMapping(n=0)}
                    )
                },
            )
        for _, name in interleaved(names, sizes.rounds):
            for mode, overlap in (("disjoint", 0.0), ("overlap10", OVERLAP)):
                for count in sizes.writers:
                    results = _spread(
                        systems[name],
                        pool,
                        count,
                        "w_writer",
                        lambda i, name=name, overlap=overlap: {
                            "key": f"b:{name}",
                            "own": f"w{i}",
                            "overlap": overlap,
                            "duration_s": sizes.seconds,
                        },
                    )
                    runs.setdefault((name, mode, count), []).append(_rate(results))
        pool.run_all(list(range(len(pool))), "w_close_all", [{}] * len(pool))
        _SHARED.clear()
    out: dict[str, Any] = {}
    for (name, mode, count), rounds in runs.items():
        row = out.setdefault(name, {"writers_in": _writers_in(systems[name])})
        row.setdefault(mode, {})[str(count)] = {
            "commits_per_s": statistics.median(r["commits_per_s"] for r in rounds),
            "conflict_rate": statistics.median(r["conflict_rate"] for r in rounds),
            "rounds": rounds,
        }
    return {
        "title": "b. throughput, 1-object commits, 1/4/8 writers",
        "unit": "commits/s",
        "better": "higher",
        "note": f"disjoint: each writer its own object; overlap10: {OVERLAP:.0%} of the "
        "transactions change one object all writers share (ConflictError retried); "
        "conflict_rate = conflicts per committed transaction",
        "systems": out,
    }


def _writers_in(system: System) -> str:
    if not system.multi_process:
        return "threads of one process"
    return "processes" + (
        f", spread over {len(system.sites)} nodes" if system.kind == "paxos" else ""
    )


def _rate(results: list[dict[str, float]]) -> dict[str, float]:
    commits = sum(r["commits"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    return {
        "commits_per_s": commits / elapsed,
        "conflict_rate": sum(r["conflicts"] for r in results) / max(commits, 1),
        "transient": sum(r["transient"] for r in results),
    }


# -- c. bank ---------------------------------------------------------------------------------

C_SYSTEMS = ["paxos-3node", "embedded", "rs-sqlite", "filestorage", "zeo", "postgres"]
BALANCE = 1000


def w_bank(
    dbs: dict[str, Any],
    zconfig: str,
    key: str,
    accounts: int,
    start_at: float,
    duration_s: float,
    seed: int,
) -> dict[str, float]:
    """Transfers between random accounts until ``start_at + duration_s``; conflicts that
    BTree conflict resolution cannot merge are retried."""
    db = _db(dbs, zconfig)
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    rng = random.Random(seed)
    commits = conflicts = transient = 0
    wait_until(start_at)
    stop = start_at + duration_s
    while time.time() < stop:
        a, b = rng.sample(range(accounts), 2)
        amount = rng.randint(1, 10)

        def transfer(a: int = a, b: int = b, amount: int = amount) -> None:
            bank = conn.root()[key]
            bank[a] -= amount
            bank[b] += amount

        c, t = commit_retrying(tm, transfer)
        commits += 1
        conflicts += c
        transient += t
    elapsed = time.time() - start_at
    conn.close()
    return {"commits": commits, "conflicts": conflicts, "transient": transient, "elapsed": elapsed}


def bank(systems: dict[str, System], pool: Any, sizes: Sizes) -> dict[str, Any]:
    names = [n for n in C_SYSTEMS if n in systems]
    workers = {n: 2 * len(systems[n].sites) if systems[n].kind == "paxos" else 4 for n in names}
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    totals: dict[str, list[int]] = {}
    with Databases() as dbs:
        for name in names:
            db = _prepare(systems[name], pool, workers[name], dbs)
            setup_keys(
                db, {f"c:{name}": lambda: OOBTree(dict.fromkeys(range(sizes.accounts), BALANCE))}
            )
        for _, name in interleaved(names, sizes.rounds):
            results = _spread(
                systems[name],
                pool,
                workers[name],
                "w_bank",
                lambda i, name=name: {
                    "key": f"c:{name}",
                    "accounts": sizes.accounts,
                    "duration_s": sizes.bank_seconds,
                },
            )
            runs[name].append(_rate(results))
        pool.run_all(list(range(len(pool))), "w_close_all", [{}] * len(pool))
        _SHARED.clear()
        for name in names:
            system = systems[name]
            sites = range(len(system.sites)) if system.multi_process else [0]
            totals[name] = []
            for site in sites:
                db = dbs[name] if site == 0 else dbs.open(f"{name}:{site}", system.zconfig(site))
                with db.transaction() as conn:
                    totals[name].append(sum(conn.root()[f"c:{name}"].values()))
    expected = sizes.accounts * BALANCE
    return {
        "title": "c. bank: transfers between random accounts in a BTree",
        "unit": "commits/s",
        "better": "higher",
        "note": f"{sizes.accounts} accounts; 2 workers (processes) per paxos node, 4 for the "
        "others (threads for FileStorage and embedded); acknowledged transfers per second; "
        f"the total must stay {expected} on every node",
        "systems": {
            n: {
                "workers": workers[n],
                "commits_per_s": statistics.median(r["commits_per_s"] for r in runs[n]),
                "conflict_rate": statistics.median(r["conflict_rate"] for r in runs[n]),
                "totals": totals[n],
                "total_ok": all(t == expected for t in totals[n]),
                "rounds": runs[n],
            }
            for n in names
        },
    }


# -- d. zodbshootout-style add/update/cold/warm/hot ------------------------------------------

D_SYSTEMS = A_SYSTEMS
D_OPS = ("add", "update", "warm", "cold", "hot")


def clear_storage_caches(db: ZODB.DB) -> None:
    """Empty the storage-level caches (RelStorage's local cache, ZEO's client cache), as
    zodbshootout's cold test does; FileStorage has none. The OS page cache stays warm."""
    storage = db.storage
    cache = getattr(storage, "_cache", None)
    if cache is None:
        return
    try:
        cache.clear(load_persistent=False)  # RelStorage
    except TypeError:
        cache.clear()  # ZEO


def shootout(systems: dict[str, System], sizes: Sizes) -> dict[str, Any]:
    names = [n for n in D_SYSTEMS if n in systems]
    per_op: dict[str, dict[str, list[float]]] = {n: {op: [] for op in D_OPS} for n in names}
    with Databases() as dbs:
        for name in names:
            dbs.open(name, systems[name].zconfig())
        for r, name in interleaved(names, sizes.rounds):
            for op, us in _shootout_round(dbs[name], f"d:{name}:{r}", sizes.objects).items():
                per_op[name][op].append(us)
    return {
        "title": f"d. zodbshootout-style, {sizes.objects} objects per transaction",
        "unit": "µs/object",
        "better": "lower",
        "note": "add: create and commit; update: change all and commit; warm: update and "
        "commit in one connection, then read them all in another (write+read, as "
        "zodbshootout); cold: storage caches cleared, pickle cache ghosted, read all; hot: "
        "pickle cache ghosted, storage caches warm, read all",
        "systems": {
            n: {op: statistics.median(v) for op, v in per_op[n].items()} | {"rounds": per_op[n]}
            for n in names
        },
    }


def _shootout_round(db: ZODB.DB, key: str, count: int) -> dict[str, float]:
    tm_a, tm_b = transaction.TransactionManager(), transaction.TransactionManager()
    a, b = db.open(tm_a), db.open(tm_b)
    out = {}
    tm_a.begin()
    started = time.perf_counter()
    container = PersistentMapping()
    for i in range(count):
        container[i] = PersistentMapping(data="x" * 250, n=0)
    a.root()[key] = container
    tm_a.commit()
    out["add"] = time.perf_counter() - started
    tm_a.begin()
    started = time.perf_counter()
    for obj in container.values():
        obj["n"] += 1
    tm_a.commit()
    out["update"] = time.perf_counter() - started
    tm_b.begin()
    read = list(b.root()[key].values())
    for obj in read:
        obj["n"]
    tm_b.abort()
    tm_a.begin()
    started = time.perf_counter()
    for obj in container.values():
        obj["n"] += 1
    tm_a.commit()
    tm_b.begin()
    for obj in b.root()[key].values():
        obj["n"]
    out["warm"] = time.perf_counter() - started
    for label, clear in (("cold", True), ("hot", False)):
        tm_b.abort()
        b.cacheMinimize()
        if clear:
            clear_storage_caches(db)
        tm_b.begin()
        started = time.perf_counter()
        for obj in b.root()[key].values():
            obj["n"]
        out[label] = time.perf_counter() - started
    tm_b.abort()
    a.close()
    b.close()
    return {op: seconds / count * 1e6 for op, seconds in out.items()}


# -- e. uncached loads while another process writes -----------------------------------------

E_SYSTEMS = ["paxos-leader", "paxos-follower", "rs-sqlite", "zeo", "postgres"]


def w_background_writer(
    dbs: dict[str, Any], zconfig: str, key: str, stop_path: str
) -> dict[str, float]:
    """Commit one-object transactions until ``stop_path`` exists."""
    db = _db(dbs, zconfig)
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    commits = 0
    started = time.time()
    while not os.path.exists(stop_path):

        def change() -> None:
            conn.root()[key]["n"] += 1

        commit_retrying(tm, change)
        commits += 1
    elapsed = time.time() - started
    conn.close()
    return {"commits_per_s": commits / elapsed}


def uncached_loads(
    systems: dict[str, System], pool: Any, sizes: Sizes, scratch: str
) -> dict[str, Any]:
    names = [n for n in E_SYSTEMS if n in systems]
    samples: dict[str, list[list[float]]] = {n: [] for n in names}
    writes: dict[str, list[float]] = {n: [] for n in names}
    oids: dict[str, list[bytes]] = {}
    writer_site = {n: 0 for n in names}  # paxos: the writer commits through the leader's node
    writer_zconfig = {
        n: (systems["paxos-leader"] if systems[n].kind == "paxos" else systems[n]).zconfig()
        for n in names
    }
    with Databases() as dbs:
        for name in names:
            db = dbs.open(name, systems[name].zconfig(cache_mb=0))
            setup_keys(db, {f"e:{name}:w": lambda: PersistentMapping(n=0)})
            oids[name] = _populate(db, f"e:{name}", sizes.load_objects)
        for _, name in interleaved(names, sizes.rounds):
            stop_path = os.path.join(scratch, f"stop-{name}-{time.time_ns()}")
            pool.submit(
                writer_site[name],
                "w_background_writer",
                zconfig=writer_zconfig[name],
                key=f"e:{name}:w",
                stop_path=stop_path,
            )
            time.sleep(0.3)  # the writer is committing before the loads begin
            try:
                samples[name].append(_loads(dbs[name], oids[name], sizes.loads))
            finally:
                open(stop_path, "w").close()
                writes[name].append(pool.result(writer_site[name])["commits_per_s"])
        pool.run_all(list(range(len(pool))), "w_close_all", [{}] * len(pool))
    return {
        "title": "e. uncached load latency while another process commits",
        "unit": "µs",
        "better": "lower",
        "note": f"cache-local-mb 0 (ZEO: cache-size 0), storage.load of random oids among "
        f"{sizes.load_objects}, on a storage instance re-polled every 100 loads; a writer "
        "process commits 1-object transactions meanwhile (through the leader's node for paxos)",
        "systems": {
            n: latency_summary(samples[n], keep_samples=True)
            | {"writer_commits_per_s": statistics.median(writes[n])}
            for n in names
        },
    }


def _populate(db: ZODB.DB, key: str, count: int) -> list[bytes]:
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    oids: list[bytes] = []
    for start in range(0, count, 1000):
        tm.begin()
        batch = [
            PersistentMapping(data="x" * 250, n=i) for i in range(start, min(count, start + 1000))
        ]
        conn.root()[f"{key}:{start}"] = batch
        tm.commit()
        oids.extend(obj._p_oid for obj in batch)
    conn.close()
    return oids


def _loads(db: ZODB.DB, oids: list[bytes], count: int) -> list[float]:
    instance = db._mvcc_storage.new_instance()
    rng = random.Random(len(oids))
    out = []
    try:
        for i in range(count):
            if i % 100 == 0:
                instance.poll_invalidations()
            oid = rng.choice(oids)
            started = time.perf_counter()
            instance.load(oid)
            out.append(time.perf_counter() - started)
    finally:
        instance.release()
    return out


# -- f. read-only transactions -----------------------------------------------------------------

F_VARIANTS = [
    ("paxos-leader", "linearizable"),
    ("paxos-follower", "linearizable"),
    ("paxos-leader", "session"),
    ("paxos-follower", "session"),
    ("embedded", "linearizable"),
    ("rs-sqlite", None),
    ("filestorage", None),
    ("postgres", None),
]


def row_name(system: str, consistency: str | None) -> str:
    return system if consistency is None else f"{system} ({consistency})"


def read_only(systems: dict[str, System], sizes: Sizes) -> dict[str, Any]:
    variants = [(s, c) for s, c in F_VARIANTS if s in systems]
    rows = [row_name(s, c) for s, c in variants]
    samples: dict[str, list[list[float]]] = {r: [] for r in rows}
    state = {}
    with Databases() as dbs:
        for (system, consistency), row in zip(variants, rows, strict=True):
            kwargs = {"consistency": consistency} if consistency else {}
            db = dbs.open(row, systems[system].zconfig(cache_mb=0, **kwargs))
            key = f"f:{row}"
            setup_keys(
                db,
                {
                    key: lambda: PersistentMapping(
                        hot=[PersistentMapping(v=i) for i in range(10)],
                        cold=PersistentMapping(v="x" * 250),
                    )
                },
            )
            state[row] = (db, transaction.TransactionManager(), key)
            _read_samples(*state[row], count=5)  # warm-up: the 10 objects are in the cache
        for _, row in interleaved(rows, sizes.rounds):
            samples[row].append(_read_samples(*state[row], count=sizes.reads))
    return {
        "title": "f. read-only transaction: 10 cached objects + 1 uncached",
        "unit": "µs",
        "better": "lower",
        "note": "db.open() from the pool, begin, read 10 objects in the ZODB cache and one "
        "ghost (cache-local-mb 0: a storage load), abort, close",
        "systems": {r: latency_summary(samples[r], keep_samples=True) for r in rows},
    }


def _read_samples(
    db: ZODB.DB, tm: transaction.TransactionManager, key: str, count: int
) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        conn = db.open(tm)
        tm.begin()
        page = conn.root()[key]
        for obj in page["hot"]:
            obj["v"]
        cold = page["cold"]
        cold["v"]
        tm.abort()
        conn.close()
        out.append(time.perf_counter() - started)
        cold._p_invalidate()  # a ghost again for the next transaction (not timed)
    return out


# -- g. a WSGI application's read-only request -------------------------------------------------

G_SYSTEMS = A_SYSTEMS
PAGES = 20


def make_site() -> PersistentMapping:
    pages = OOBTree()
    for p in range(PAGES):
        pages[p] = PersistentMapping(
            title=f"Page {p}",
            body="Lorem ipsum dolor sit amet. " * 20,
            items=[PersistentMapping(name=f"item {p}.{i}", price=i * 1.5) for i in range(5)],
        )
    return PersistentMapping(name="bench shop", pages=pages)


def make_app(db: ZODB.DB, key: str) -> Callable[..., list[bytes]]:
    """A WSGI application: one connection per request, from the pool, closed at the end."""
    tm = transaction.TransactionManager()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        conn = db.open(tm)
        try:
            tm.begin()
            site = conn.root()[key]
            page = site["pages"][int(environ["PATH_INFO"].rsplit("/", 1)[1])]
            rows = "".join(
                f"<li>{item['name']}: {item['price']:.2f}</li>" for item in page["items"]
            )
            html = (
                f"<html><head><title>{site['name']}: {page['title']}</title></head><body>"
                f"<h1>{page['title']}</h1><p>{page['body']}</p><ul>{rows}</ul></body></html>"
            )
        finally:
            tm.abort()
            conn.close()
        body = html.encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def wsgi(systems: dict[str, System], sizes: Sizes) -> dict[str, Any]:
    names = [n for n in G_SYSTEMS if n in systems]
    samples: dict[str, list[list[float]]] = {n: [] for n in names}
    apps = {}
    with Databases() as dbs:
        for name in names:
            db = dbs.open(name, systems[name].zconfig())
            setup_keys(db, {f"g:{name}": make_site})
            apps[name] = make_app(db, f"g:{name}")
            _requests(apps[name], 5, random.Random(0))
        rng = random.Random(1)
        for _, name in interleaved(names, sizes.rounds):
            samples[name].append(_requests(apps[name], sizes.requests, rng))
    return {
        "title": "g. WSGI application, read-only request",
        "unit": "µs",
        "better": "lower",
        "note": "a WSGI callable called in-process (wsgiref environ): opens a connection from "
        "the pool, begins, renders a page from 7 objects, aborts, closes; linearizable for paxos",
        "systems": {n: latency_summary(samples[n]) for n in names},
    }


def _requests(app: Callable[..., list[bytes]], count: int, rng: random.Random) -> list[float]:
    out = []
    status: list[str] = []
    for _ in range(count):
        environ: dict[str, Any] = {}
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = f"/page/{rng.randrange(PAGES)}"
        started = time.perf_counter()
        body = b"".join(app(environ, lambda s, h: status.append(s)))
        out.append(time.perf_counter() - started)
        assert body.startswith(b"<html>"), body[:50]
    assert set(status) == {"200 OK"}, set(status)
    return out


# -- i. lease holder death ------------------------------------------------------------------------


def lease_holder_death(cluster: Any, sizes: Sizes) -> dict[str, Any]:
    """Commit continuously through the leader's node and kill -9 a follower, a read-lease
    holder, mid-run: until the leader stops counting on the dead holder's lease (about
    ``read-lease``), no commit can finish. Reports the longest gap between two commits after
    the kill beside the longest before it; the killed node restarts between trials."""
    from tests.integration.processes import wait_for

    trials = []
    for trial in range(sizes.failovers):
        leader = cluster.wait_for_leader()
        victim = next(n for n in cluster.running() if n is not leader)
        system = System("leader", "paxos", (str(leader.data_dir),), True)
        db = open_db(system.zconfig())
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        key = f"i:{trial}"
        commit_retrying(tm, lambda c=conn, k=key: c.root().__setitem__(k, PersistentMapping(n=0)))
        done: list[float] = []
        killed_at = 0.0
        started = time.monotonic()
        while time.monotonic() - started < 4.0:
            if not killed_at and time.monotonic() - started >= 1.0:
                killed_at = time.monotonic()
                victim.kill()
            n = len(done)
            commit_retrying(tm, lambda c=conn, k=key, n=n: c.root()[k].__setitem__("n", n))
            done.append(time.monotonic())
        before = [b - a for a, b in itertools.pairwise(done) if b <= killed_at]
        after = [b - max(a, killed_at) for a, b in itertools.pairwise(done) if b > killed_at]
        conn.close()
        db.close()
        victim.start()
        wait_for(f"restarted node {victim.node_id}", victim.status, 60)
        cluster.wait_converged(60)
        trials.append(
            {
                "killed_node": victim.node_id,
                "longest_gap_before_s": max(before),
                "longest_gap_after_s": max(after),
                "commits": len(done),
            }
        )
    stalls = [t["longest_gap_after_s"] for t in trials]
    return {
        "title": "i. write stall when a read-lease holder dies: kill -9 of a follower",
        "unit": "s",
        "better": "lower",
        "note": "commits in a loop through the leader's node for 4 s, the follower killed at"
        " 1 s; the stall is the longest wait for a commit after the kill (read-lease 1 s,"
        " election timeout 0.4 s)",
        "systems": {
            "paxos-3node": {
                "median_s": statistics.median(stalls),
                "max_s": max(stalls),
                "longest_gap_before_s": statistics.median(
                    t["longest_gap_before_s"] for t in trials
                ),
                "trials": trials,
            }
        },
    }


# -- j. lock holder's node death ----------------------------------------------------------------


def lock_holder_death(cluster: Any, sizes: Sizes) -> dict[str, Any]:
    """An application on one node votes a transaction on a hot object (its lock held between
    vote and finish), then that node is killed with kill -9: the time until an application
    on a surviving node commits the hot object (its vote waits for the lock). Before
    ExpireNodes it was the lock lease, 30 s plus the commit lock timeout. The leader's node
    and a follower's, ``sizes.failovers`` kills each; the killed node restarts between
    trials."""
    from ZODB.Connection import TransactionMetaData
    from ZODB.tests.MinPO import MinPO
    from ZODB.tests.StorageTestBase import zodb_pickle

    from tests.integration.processes import wait_for

    stalls: dict[str, list[float]] = {"leader killed": [], "follower killed": []}
    for trial in range(sizes.failovers):
        for case, times in stalls.items():
            leader = cluster.wait_for_leader()
            followers = [n for n in cluster.running() if n is not leader]
            victim, survivor = (
                (leader, followers[0]) if case == "leader killed" else (followers[0], followers[1])
            )
            survivor_db = open_db(
                System("survivor", "paxos", (str(survivor.data_dir),), True).zconfig(
                    commit_lock_timeout_s=60
                )
            )
            victim_db = open_db(System("victim", "paxos", (str(victim.data_dir),), True).zconfig())
            key = f"j:{trial}:{case}"
            tm = transaction.TransactionManager()
            conn = survivor_db.open(tm)
            commit_retrying(
                tm, lambda c=conn, k=key: c.root().__setitem__(k, PersistentMapping(n=0))
            )
            oid = conn.root()[key]._p_oid
            with victim_db.transaction() as victim_conn:  # linearizable: it sees the commit
                victim_conn.root()[key]
            storage = victim_db.storage.new_instance()
            serial = storage.load(oid)[1]
            txn = TransactionMetaData()
            storage.tpc_begin(txn)
            storage.store(oid, serial, zodb_pickle(MinPO("never")), "", txn)
            storage.tpc_vote(txn)
            killed_at = time.monotonic()
            victim.kill()
            commit_retrying(tm, lambda c=conn, k=key: c.root()[k].__setitem__("n", 1))
            times.append(time.monotonic() - killed_at)
            conn.close()
            survivor_db.close()
            storage.release()
            victim_db.close()
            victim.start()
            wait_for(f"restarted node {victim.node_id}", victim.status, 60)
            cluster.wait_converged(60)
    return {
        "title": "j. write stall on a hot object when the node of its lock holder dies",
        "unit": "s",
        "better": "lower",
        "note": "a transaction through the killed node holds the object's lock between vote"
        " and finish; the stall is from the kill -9 until another node's application commits"
        " the object (node-timeout 1 s, election timeout 0.4 s; before ExpireNodes: the"
        " lock lease, 30 s plus commit-lock-timeout)",
        "systems": {
            case: {
                "median_s": statistics.median(times),
                "max_s": max(times),
                "trials": [{"stall_s": t} for t in times],
            }
            for case, times in stalls.items()
        },
    }


# -- h. failover ---------------------------------------------------------------------------------


def failover(cluster: Any, sizes: Sizes) -> dict[str, Any]:
    """kill -9 the leader's node process; time until a commit through a surviving node
    succeeds (retried as soon as one fails); restart the killed node between trials."""
    from tests.integration.processes import wait_for

    times: list[float] = []
    trials = []
    for trial in range(sizes.failovers):
        leader = cluster.wait_for_leader()
        survivor = next(n for n in cluster.running() if n is not leader)
        system = System("survivor", "paxos", (str(survivor.data_dir),), True)
        db = open_db(system.zconfig(consistency="session", commit_lock_timeout_s=1))
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        key = f"h:{trial}"
        commit_retrying(tm, lambda c=conn, k=key: c.root().__setitem__(k, PersistentMapping(n=0)))
        killed_at = time.monotonic()
        leader.kill()
        attempts = 0
        while True:
            attempts += 1
            try:
                tm.begin()
                conn.root()[key]["n"] += 1
                tm.commit()
                break
            except Exception:
                tm.abort()
                assert time.monotonic() - killed_at < 60, "no commit within 60 s of the kill"
                time.sleep(0.005)
        elapsed = time.monotonic() - killed_at
        times.append(elapsed)
        conn.close()
        db.close()
        leader.start()
        wait_for(f"restarted node {leader.node_id}", leader.status, 60)
        cluster.wait_converged(60)
        new_leader = cluster.wait_for_leader()
        trials.append(
            {
                "killed_node": leader.node_id,
                "commit_through_node": survivor.node_id,
                "new_leader": new_leader.node_id,
                "seconds": elapsed,
                "attempts": attempts,
            }
        )
    return {
        "title": "h. failover: kill -9 of the leader until the next commit succeeds",
        "unit": "s",
        "better": "lower",
        "note": "commit through a surviving node, retried at once on failure "
        "(commit-lock-timeout 1 s); election timeout 0.4 s (tests/integration/processes.py)",
        "systems": {
            "paxos-3node": {
                "median_s": statistics.median(times),
                "max_s": max(times),
                "trials": trials,
            }
        },
    }
