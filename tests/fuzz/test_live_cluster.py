"""Fuzz a live 3-node cluster of real node processes while a workload commits through every
node: random and mutated envelopes to each peer port, random and mutated requests and records
to each Sequencer socket. Afterwards no process has exited, every node still commits, the
replicas agree, every acknowledged commit is in every replica, no request was answered with
UNKNOWN or left a traceback in a node's log, and every refusal was counted in the node's
metrics.

Not sent: a peer envelope that passes every check the receiving node makes (right cluster
and version, a member other than the receiver as sender, addressed to the receiver, its own
ballot, slots in order). Such a message is a well-formed forgery in a member's name, which
only peer authentication (mTLS) can refuse; the fuzzer counts and withholds them.
Sequencer requests that are valid are sent: an application may propose any record, and the
applier must reject what it cannot apply identically on every node.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import DecodeError

from relstorage_paxos.errors import PaxosError, PeerMessageError
from relstorage_paxos.pb import peer_pb2, records_pb2, sequencer_pb2
from relstorage_paxos.replica import Replica
from relstorage_paxos.replica.codec import RECORD_VERSION
from relstorage_paxos.transport import codec
from relstorage_paxos.transport.channels import STREAM_METHOD
from relstorage_paxos.transport.peer_client import frame_batch
from tests.fuzz.mutations import mutate, random_int, random_message
from tests.integration.processes import (
    NodeProcess,
    ProcessCluster,
    noop_record,
    running_cluster,
    wait_for,
)

SEED = int(os.environ.get("FUZZ_SEED", "20261207"))
"""The run's seed (``FUZZ_SEED=n`` replays or varies it); thread timing is not replayed."""

SEQUENCER_SERVICE = "/relstorage_paxos.sequencer.Sequencer"
SEQUENCER_METHODS = ("Propose", "ReadIndex", "WaitApplied", "AllocateOids", "Status")

EXPECTED_SEQUENCER_CODES = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""What a hostile request may be answered with: never UNKNOWN (an exception escaped a
handler) nor INTERNAL (gRPC failed to parse, with a traceback in the node's log)."""

REFUSED_AS_INVALID = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)


@dataclass
class Tally:
    """What one fuzzer sent and how it was answered, per target node."""

    sent: int = 0
    withheld: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    refused: Counter[int] = field(default_factory=Counter)
    """Per node: calls the node itself refused as invalid (counted in its metrics)."""


class PeerFuzzer:
    """Random envelopes, mostly close to valid (right cluster, version and addressing, so
    that they reach the deeper checks), a third of them then mutated byte by byte."""

    def __init__(self, cluster: ProcessCluster, rng: random.Random) -> None:
        self.cluster_id = cluster.cluster_id
        self.members = frozenset(cluster.nodes)
        self.rng = rng

    def batch_for(self, target: int) -> bytes | None:
        """One batch to send to ``target``, or ``None`` for a well-formed forgery."""
        rng = self.rng
        envelopes = [self._envelope(target) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        data = frame_batch(envelopes)
        if rng.random() < 0.1:
            data = mutate(data, rng)
        elif rng.random() < 0.02:
            data = rng.randbytes(rng.randint(0, 200))
        return None if self._is_forgery(data, target) else data

    def _envelope(self, target: int) -> bytes:
        rng = self.rng
        env = random_message(peer_pb2.Envelope.DESCRIPTOR, rng)
        assert isinstance(env, peer_pb2.Envelope)
        if rng.random() < 0.9:
            env.cluster_id = self.cluster_id
        if rng.random() < 0.9:
            env.protocol_version = codec.PROTOCOL_VERSION
        kind = env.WhichOneof("body")
        if kind is not None:
            body = getattr(env, kind)
            others = sorted(self.members - {target})
            if rng.random() < 0.85:
                body.src = rng.choice(others)
            if rng.random() < 0.85:
                body.dst = target
            if body.DESCRIPTOR.fields_by_name.get("ballot") and rng.random() < 0.5:
                body.ballot.node_id = body.src
        data = env.SerializeToString()
        return mutate(data, rng) if rng.random() < 0.3 else data

    def _is_forgery(self, data: bytes, target: int) -> bool:
        """The batch holds an envelope that ``target`` would deliver to its core."""
        try:
            batch = peer_pb2.EnvelopeBatch.FromString(data)
        except DecodeError:
            return False
        for env in batch.envelopes:
            try:
                msg = codec.decode(env, self.cluster_id, self.members)
            except PeerMessageError:
                continue
            if msg.src != target and msg.dst == target:
                return True
        return False


class SequencerFuzzer:
    """Requests of every method with random fields, random and mutated records, and
    unparseable bytes to every method name (and one that does not exist)."""

    def __init__(self, cluster: ProcessCluster, rng: random.Random) -> None:
        self.cluster_id = cluster.cluster_id
        self.rng = rng

    def request(self) -> tuple[str, bytes, float]:
        """(method, serialized request, client timeout in seconds)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            request = sequencer_pb2.ProposeRequest(
                cluster_id=self._cluster_id(),
                request_id=rng.randbytes(rng.choice((0, 8, 16, 16, 16, 300))),
                record=self._record(),
                timeout_ms=rng.randint(1, 1000),
            )
            return "Propose", request.SerializeToString(), 6.0
        if roll < 0.6:
            count = random_int(rng, 0, 2**32 - 1, small=200)
            oids = sequencer_pb2.AllocateOidsRequest(cluster_id=self._cluster_id(), count=count)
            return "AllocateOids", oids.SerializeToString(), 6.0
        if roll < 0.7:
            wait = sequencer_pb2.WaitAppliedRequest(
                cluster_id=self._cluster_id(),
                slot=random_int(rng, 0, 2**64 - 1),
                timeout_ms=rng.randint(1, 20),
            )
            return "WaitApplied", wait.SerializeToString(), 6.0
        if roll < 0.78:
            read = sequencer_pb2.ReadIndexRequest(cluster_id=self._cluster_id())
            return "ReadIndex", read.SerializeToString(), 6.0
        if roll < 0.85:
            status = sequencer_pb2.StatusRequest(cluster_id=self._cluster_id())
            return "Status", status.SerializeToString(), 6.0
        method = rng.choice((*SEQUENCER_METHODS, "NoSuchMethod"))
        return method, mutate(rng.randbytes(rng.randint(0, 40)), rng), 6.0

    def _cluster_id(self) -> str:
        return self.cluster_id if self.rng.random() < 0.92 else "another-cluster"

    def _record(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.2:
            return rng.randbytes(rng.randint(0, 64))
        if roll < 0.35:
            return mutate(noop_record(rng.randbytes(16)), rng)
        record = random_message(records_pb2.Record.DESCRIPTOR, rng)
        assert isinstance(record, records_pb2.Record)
        if rng.random() < 0.8:
            record.version = RECORD_VERSION
        data = record.SerializeToString()
        return mutate(data, rng) if roll < 0.6 else data


@dataclass
class Workload:
    """Noop records proposed round-robin through every node, each retried with its id until
    its outcome arrives (a node busy with hostile traffic may answer late)."""

    nodes: list[NodeProcess]
    acked: dict[bytes, int] = field(default_factory=dict)
    acked_by_node: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            node = self.nodes[i % len(self.nodes)]
            request_id = f"work-{i}".encode()
            deadline = time.monotonic() + 60
            while True:
                try:
                    slot, _ = node.client.propose(request_id, noop_record(request_id), 5.0)
                    break
                except PaxosError as exc:
                    if time.monotonic() > deadline:
                        self.errors.append(f"{request_id!r} at node {node.node_id}: {exc}")
                        return
            self.acked[request_id] = slot
            self.acked_by_node[node.node_id] += 1
            i += 1


def fuzz_peers(cluster: ProcessCluster, messages: int, rng: random.Random, tally: Tally) -> None:
    fuzzer = PeerFuzzer(cluster, rng)
    channels = {n: grpc.insecure_channel(node.address) for n, node in cluster.nodes.items()}
    calls = {
        n: ch.stream_unary(
            STREAM_METHOD,
            request_serializer=lambda b: b,
            response_deserializer=peer_pb2.StreamAck.FromString,
        )
        for n, ch in channels.items()
    }
    try:
        while tally.sent < messages:
            target = rng.choice(sorted(calls))
            data = fuzzer.batch_for(target)
            if data is None:
                tally.withheld += 1
                continue
            tally.sent += 1
            try:
                calls[target](iter([data]), timeout=10)
                tally.codes["OK"] += 1
            except grpc.RpcError as exc:
                tally.codes[exc.code().name] += 1
                if (exc.details() or "").startswith(f"node {target} rejects the stream"):
                    tally.refused[target] += 1
    finally:
        for ch in channels.values():
            ch.close()


def fuzz_sequencers(
    cluster: ProcessCluster, requests: int, rng: random.Random, tally: Tally
) -> None:
    fuzzer = SequencerFuzzer(cluster, rng)
    channels = {
        n: grpc.insecure_channel(f"unix:{node.data_dir / 'sequencer.sock'}")
        for n, node in cluster.nodes.items()
    }
    try:
        while tally.sent < requests:
            target = rng.choice(sorted(channels))
            method, data, timeout_s = fuzzer.request()
            call: Callable[..., bytes] = channels[target].unary_unary(
                f"{SEQUENCER_SERVICE}/{method}",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            tally.sent += 1
            try:
                call(data, timeout=timeout_s)
                tally.codes["OK"] += 1
            except grpc.RpcError as exc:
                code = exc.code()
                tally.codes[code.name] += 1
                assert code in EXPECTED_SEQUENCER_CODES, (method, code, exc.details(), SEED)
                if code in REFUSED_AS_INVALID:
                    tally.refused[target] += 1
    finally:
        for ch in channels.values():
            ch.close()


def metric_sum(cluster: ProcessCluster, node_id: int, name: str) -> float:
    url = f"http://{cluster.http_addresses[node_id]}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))


def rng_of(rng: random.Random) -> random.Random:
    return random.Random(rng.getrandbits(64))


def run_fuzz(tmp_path: Path, peer_messages: int, sequencer_requests: int) -> None:
    rng = random.Random(SEED)
    peer_tally, sequencer_tally = Tally(), Tally()
    with running_cluster(tmp_path, 3, http_status=True) as cluster:
        workload = Workload(list(cluster.nodes.values()))
        failures: list[BaseException] = []

        def thread(name: str, target: Callable[..., None], *args: object) -> threading.Thread:
            def run() -> None:
                try:
                    target(*args)
                except BaseException as exc:
                    failures.append(exc)

            t = threading.Thread(target=run, name=name)
            t.start()
            return t

        working = thread("workload", workload.run)
        fuzzers = [
            thread("fuzz-peers", fuzz_peers, cluster, peer_messages, rng_of(rng), peer_tally),
            thread(
                "fuzz-sequencers",
                fuzz_sequencers,
                cluster,
                sequencer_requests,
                rng_of(rng),
                sequencer_tally,
            ),
        ]
        for t in fuzzers:
            t.join()
        acked_while_fuzzing = dict(workload.acked_by_node)
        workload.stop.set()
        working.join(90)
        if failures:
            raise failures[0]
        summary = (
            f"seed {SEED}: peer {peer_tally.sent} sent, {peer_tally.withheld} forgeries "
            f"withheld, {dict(peer_tally.codes)}; sequencer {sequencer_tally.sent} sent, "
            f"{dict(sequencer_tally.codes)}; workload acked {acked_while_fuzzing}"
        )
        print(summary)
        assert not workload.errors, (workload.errors, summary)
        for node in cluster.nodes.values():
            assert node.running, (node.node_id, summary, node.log_text()[-3000:])
            assert acked_while_fuzzing.get(node.node_id, 0) > 0, summary
            # The node still commits once the fuzzers stop: its driver loop is alive.
            request_id = f"after-{node.node_id}".encode()
            workload.acked[request_id] = wait_for(
                f"a commit through node {node.node_id}",
                lambda node=node, rid=request_id: node.client.propose(rid, noop_record(rid), 5.0)[
                    0
                ],
                60,
            )
        cluster.wait_converged(60)
        for node_id, node in cluster.nodes.items():
            log = node.log_text()
            assert "Traceback" not in log, (node_id, log[log.index("Traceback") - 500 :][:3000])
            assert (
                metric_sum(cluster, node_id, "relstorage_paxos_rejected_messages_total")
                == peer_tally.refused[node_id]
            ), (node_id, summary)
            assert (
                metric_sum(cluster, node_id, "relstorage_paxos_rejected_requests_total")
                == sequencer_tally.refused[node_id]
            ), (node_id, summary)
    hashes = set()
    for node in cluster.nodes.values():
        with Replica.open(node.data_dir / "replica.sqlite3") as replica:
            hashes.add((replica.applied_slot, replica.running_hash))
            lost = [rid for rid in workload.acked if replica.outcome(rid) is None]
            assert not lost, (node.node_id, lost[:5], len(workload.acked))
    assert len(hashes) == 1, hashes
    assert peer_tally.sent >= peer_messages and sequencer_tally.sent >= sequencer_requests


def test_fuzz_a_live_cluster(tmp_path: Path) -> None:
    run_fuzz(tmp_path, peer_messages=3_000, sequencer_requests=100)


@pytest.mark.slow
def test_fuzz_a_live_cluster_a_million_times(tmp_path: Path) -> None:
    run_fuzz(tmp_path, peer_messages=800_000, sequencer_requests=200_000)
