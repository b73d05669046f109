"""The Sequencer service on a real gRPC server: it honours its caller's deadline (a request
the node cannot answer in time ends before the caller's gRPC deadline with the node's
reason, instead of holding a server thread for the server's own 30 s while the caller has
long given up on a bare DEADLINE_EXCEEDED), and a request it refuses gets INVALID_ARGUMENT
naming why, never UNKNOWN with a traceback in the node's log."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import grpc
import pytest

from relstorage_paxos.errors import OutcomeUnknownError, RecordTooLargeError, RequestRejectedError
from relstorage_paxos.transport.sequencer import SequencerClient
from tests.transport.clusters import sequencer_for


class SilentNode:
    """A backend whose barriers and proposals are never answered (a node without quorum,
    before it knows it has none)."""

    cluster_id = "deadlines"

    def propose(self, request_id: bytes, record: bytes) -> Future[tuple[int, bytes]]:
        if record == b"malformed":
            raise RequestRejectedError("malformed record: no body")  # as NodeServer does
        return Future()

    def read_index(self) -> Future[int]:
        return Future()

    def wait_applied(self, slot: int, timeout_s: float) -> int:
        raise AssertionError("not called")

    def allocate_oids(self, count: int, timeout_s: float) -> tuple[int, int]:
        raise AssertionError("not called")

    def status(self) -> object:
        raise AssertionError("not called")


@pytest.fixture
def rejected() -> list[str]:
    """The reasons the service counted requests as rejected for."""
    return []


@pytest.fixture
def client(tmp_path: Path, rejected: list[str]) -> Iterator[SequencerClient]:
    node = SilentNode()
    with sequencer_for(node, tmp_path / "sequencer.sock", rejected.append) as sequencer:  # type: ignore[arg-type]
        yield sequencer


def test_a_read_barrier_ends_with_the_nodes_reason_within_the_callers_timeout(
    client: SequencerClient, rejected: list[str]
) -> None:
    with pytest.raises(OutcomeUnknownError, match="no read barrier in time"):
        client.read_index(timeout_s=0.3)
    assert rejected == []  # a request the node could not answer is not an invalid one


def test_a_proposal_ends_with_the_nodes_reason_within_the_callers_timeout(
    client: SequencerClient,
) -> None:
    with pytest.raises(OutcomeUnknownError, match="retry with the same request_id"):
        client.propose(b"request", b"record", timeout_s=0.3)


def test_a_malformed_record_is_refused_with_its_reason(
    client: SequencerClient, rejected: list[str]
) -> None:
    with pytest.raises(RequestRejectedError, match=r"malformed record: no body.*INVALID_ARGUMENT"):
        client.propose(b"request", b"malformed", timeout_s=5.0)
    assert rejected == ["INVALID_ARGUMENT"]


def test_an_oversized_oid_request_is_refused_with_its_reason(
    client: SequencerClient, rejected: list[str]
) -> None:
    with pytest.raises(RequestRejectedError, match=r"count must be 1-65536.*INVALID_ARGUMENT"):
        client.allocate_oids(2**32 - 1, timeout_s=5.0)
    assert rejected == ["INVALID_ARGUMENT"]


def test_an_oversized_record_is_refused_and_counted(
    client: SequencerClient, rejected: list[str]
) -> None:
    with pytest.raises(RecordTooLargeError):
        client.propose(b"request", b"x" * ((1 << 20) + 1), timeout_s=5.0)
    assert rejected == ["OUT_OF_RANGE"]


@pytest.mark.parametrize("method", ["Propose", "AllocateOids", "Status"])
def test_unparseable_bytes_are_refused_by_the_service_not_by_grpc(
    tmp_path: Path, client: SequencerClient, rejected: list[str], method: str
) -> None:
    with grpc.insecure_channel(f"unix:{tmp_path / 'sequencer.sock'}") as channel:
        call = channel.unary_unary(
            f"/relstorage_paxos.sequencer.Sequencer/{method}",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as excinfo:
            call(b"\xff\xfe garbage \x00", timeout=5)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unparseable" in (excinfo.value.details() or "")
    assert rejected == ["INVALID_ARGUMENT"]
