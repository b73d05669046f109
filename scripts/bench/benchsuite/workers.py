"""A pool of long-lived worker processes (multiprocessing, spawn): the writers of the
throughput and bank workloads and the background writer of the load workload run in them,
so several writers are not serialized by one process's GIL.

A worker runs one command at a time: ``(function name in benchsuite.workloads, kwargs)``;
the function gets the worker's cache of open databases (by ZConfig text) as first argument.
The parent stops the workers by PID at ``close``; a worker whose parent went away exits on
the closed pipe.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any


def _worker_main(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    from benchsuite import workloads

    dbs: dict[str, Any] = {}
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                return
            name, kwargs = message
            try:
                conn.send(("ok", getattr(workloads, name)(dbs, **kwargs)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        workloads.w_close_all(dbs)


class WorkerError(RuntimeError):
    pass


class Pool:
    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self.pipes: list[Connection] = []
        for _ in range(size):
            parent, child = context.Pipe()
            process = context.Process(target=_worker_main, args=(child,), daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
            self.pipes.append(parent)

    def __len__(self) -> int:
        return len(self.processes)

    def submit(self, index: int, name: str, **kwargs: Any) -> None:
        self.pipes[index].send((name, kwargs))

    def result(self, index: int, timeout_s: float = 300.0) -> Any:
        pipe = self.pipes[index]
        if not pipe.poll(timeout_s):
            raise WorkerError(f"worker {index} gave no answer within {timeout_s} s")
        status, value = pipe.recv()
        if status != "ok":
            raise WorkerError(f"worker {index} failed:\n{value}")
        return value

    def run_all(self, indexes: list[int], name: str, per_worker: list[dict[str, Any]]) -> list[Any]:
        for index, kwargs in zip(indexes, per_worker, strict=True):
            self.submit(index, name, **kwargs)
        return [self.result(index) for index in indexes]

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(None)
        for process in self.processes:
            process.join(10)
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.join(5)
        for pipe in self.pipes:
            pipe.close()
