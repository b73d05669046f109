"""The peer codec: every core message survives encode → bytes → decode unchanged, and every
envelope this node must not act on is rejected with its own error, whatever the bytes.

Hypothesis runs derandomized and without its example database, so each run draws the same
examples: a failure replays with the same pytest command, and Hypothesis prints the
falsifying example.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from relstorage_paxos.core.ballot import ZERO_BALLOT, Ballot
from relstorage_paxos.core.messages import (
    Accept,
    Accepted,
    CatchUpReply,
    CatchUpRequest,
    Forward,
    Heartbeat,
    HeartbeatReply,
    LogEntry,
    Message,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    Proposal,
    ReadIndexReply,
    ReadIndexRequest,
    SlotValue,
    entry_size,
)
from relstorage_paxos.errors import (
    MalformedMessageError,
    PeerMessageError,
    ProtocolVersionError,
    UnknownNodeError,
    WrongClusterError,
)
from relstorage_paxos.pb import peer_pb2 as pb
from relstorage_paxos.transport import codec
from relstorage_paxos.transport.peer_client import framed_size

CLUSTER = "cluster-a"
MEMBERS = frozenset({1, 2, 3})

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=150)

u64 = st.integers(min_value=0, max_value=codec.INT64_MAX)
"""Every unsigned field's legal range: what a node persists is a signed 64-bit integer."""
# Small integers too, so that zero and the other defaults protobuf does not send are common.
ints = st.one_of(st.integers(min_value=0, max_value=3), u64)
nodes = st.one_of(st.sampled_from(sorted(MEMBERS)), u64)
ballots = st.one_of(st.just(ZERO_BALLOT), st.builds(Ballot, ints, ints))
proposals = st.builds(Proposal, st.binary(max_size=24), st.binary(max_size=200))
values = st.lists(proposals, max_size=4).map(tuple)
log_entries = st.builds(LogEntry, ints, ballots, values, st.booleans())
slot_values = st.builds(SlotValue, ints, values)


def tuples(elements: st.SearchStrategy[typing.Any]) -> st.SearchStrategy[tuple[typing.Any, ...]]:
    return st.lists(elements, max_size=5).map(tuple)


def consistent(msg: Message) -> Message:
    """``msg`` as a correct sender makes it (``codec._check_consistency``): its own ballot
    in the messages that speak for it, entries in ascending slots from 1, a catch-up reply
    with nothing beyond its commit."""
    if isinstance(msg, PreVote | Prepare | Accept | Heartbeat):
        msg = dataclasses.replace(msg, ballot=Ballot(max(1, msg.ballot.round), msg.src))
    if isinstance(msg, Accept | CatchUpReply | Promise):
        by_slot = {max(1, e.slot): dataclasses.replace(e, slot=max(1, e.slot)) for e in msg.entries}
        msg = dataclasses.replace(msg, entries=tuple(by_slot[k] for k in sorted(by_slot)))
    if isinstance(msg, CatchUpReply):
        last = msg.entries[-1].slot if msg.entries else 0
        msg = dataclasses.replace(msg, commit=max(msg.commit, last, msg.snapshot_slot))
    return msg


STRATEGIES: dict[type, st.SearchStrategy[typing.Any]] = {
    PreVote: st.builds(PreVote, nodes, nodes, ballots),
    PreVoteReply: st.builds(PreVoteReply, nodes, nodes, ballots, st.booleans(), ballots),
    Prepare: st.builds(Prepare, nodes, nodes, ballots, ints),
    Promise: st.builds(
        Promise,
        nodes,
        nodes,
        ballots,
        st.booleans(),
        ballots,
        tuples(log_entries),
        ints,
        ints,
        st.one_of(st.none(), st.integers(min_value=1, max_value=codec.INT64_MAX)),
        ballots,
    ).filter(lambda p: p.last_slot is None or p.last_slot >= p.first_slot),
    Accept: st.builds(Accept, nodes, nodes, ballots, tuples(slot_values), ints, ints),
    Accepted: st.builds(Accepted, nodes, nodes, ballots, st.booleans(), ballots, tuples(ints)),
    Heartbeat: st.builds(
        Heartbeat,
        nodes,
        nodes,
        ballots,
        ints,
        ints,
        ints,
        ints,
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-(2**63), 2**63 - 1),
    ),
    HeartbeatReply: st.builds(
        HeartbeatReply, nodes, nodes, ballots, st.booleans(), ballots, ints, ints
    ),
    Forward: st.builds(Forward, nodes, nodes, tuples(proposals)),
    ReadIndexRequest: st.builds(ReadIndexRequest, nodes, nodes, tuples(st.binary(max_size=24))),
    ReadIndexReply: st.builds(ReadIndexReply, nodes, nodes, tuples(st.binary(max_size=24)), ints),
    CatchUpRequest: st.builds(CatchUpRequest, nodes, nodes, ints),
    CatchUpReply: st.builds(CatchUpReply, nodes, nodes, tuples(slot_values), ints, ints),
}
STRATEGIES = {kind: strategy.map(consistent) for kind, strategy in STRATEGIES.items()}
MESSAGE_TYPES = typing.get_args(Message)
messages = st.one_of(*STRATEGIES.values())

# Well-formed messages from a member, for the rejection tests.
member_messages = st.builds(
    lambda msg, src: consistent(dataclasses.replace(msg, src=src)),
    messages,
    st.sampled_from(sorted(MEMBERS)),
)


def test_every_message_type_has_a_strategy_and_an_envelope_field() -> None:
    assert set(STRATEGIES) == set(MESSAGE_TYPES)
    assert len(pb.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields) == len(MESSAGE_TYPES)


@pytest.mark.parametrize("message_type", MESSAGE_TYPES, ids=lambda t: t.__name__)
def test_round_trip(message_type: type) -> None:
    @DETERMINISTIC
    @given(STRATEGIES[message_type])
    def check(msg: Message) -> None:
        env = codec.encode(msg, CLUSTER)
        assert env.cluster_id == CLUSTER
        assert env.protocol_version == codec.PROTOCOL_VERSION
        known = frozenset({msg.src})
        assert codec.decode(env, CLUSTER, known) == msg
        assert codec.decode_bytes(env.SerializeToString(), CLUSTER, known) == msg

    check()


@DETERMINISTIC
@given(member_messages, st.data())
def test_an_integer_over_int64_is_malformed(msg: Message, data: st.DataObject) -> None:
    """A slot, round or commit point of 2**63 or more would fail when persisted, on every
    restart; one field of the message is pushed there (uint64 on the wire allows it)."""
    envelope = codec.encode(msg, CLUSTER)
    body = getattr(envelope, envelope.WhichOneof("body"))
    fields = [f for f in body.DESCRIPTOR.fields if f.type == f.TYPE_UINT64 and not f.is_repeated]
    if not fields:
        return
    field = data.draw(st.sampled_from(fields))
    setattr(body, field.name, data.draw(st.integers(codec.INT64_MAX + 1, 2**64 - 1)))
    with pytest.raises(MalformedMessageError, match=f"{field.name} = .* is over 2\\*\\*63 - 1"):
        codec.decode(envelope, CLUSTER, MEMBERS)


def test_a_ballot_round_over_int64_is_malformed() -> None:
    envelope = codec.encode(Prepare(1, 2, Ballot(1, 1), from_slot=0), CLUSTER)
    envelope.prepare.ballot.round = 2**63
    with pytest.raises(MalformedMessageError, match=r"ballot\.round"):
        codec.decode(envelope, CLUSTER, MEMBERS)


def test_negative_slot_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        codec.encode(Prepare(1, 2, Ballot(1, 1), from_slot=-1), CLUSTER)


@DETERMINISTIC
@given(member_messages, st.text(max_size=12).filter(lambda c: c != CLUSTER))
def test_wrong_cluster_is_rejected(msg: Message, other_cluster: str) -> None:
    with pytest.raises(WrongClusterError):
        codec.decode(codec.encode(msg, other_cluster), CLUSTER, MEMBERS)


@DETERMINISTIC
@given(messages.filter(lambda m: m.src not in MEMBERS))
def test_unknown_sender_is_rejected(msg: Message) -> None:
    with pytest.raises(UnknownNodeError):
        codec.decode(codec.encode(msg, CLUSTER), CLUSTER, MEMBERS)


@DETERMINISTIC
@given(member_messages, st.integers(min_value=1, max_value=2**32 - 1))
def test_other_protocol_version_is_rejected(msg: Message, version: int) -> None:
    env = codec.encode(msg, CLUSTER)
    env.protocol_version = version
    if version == codec.PROTOCOL_VERSION:
        assert codec.decode(env, CLUSTER, MEMBERS) == msg
    else:
        with pytest.raises(ProtocolVersionError):
            codec.decode(env, CLUSTER, MEMBERS)


@pytest.mark.parametrize(
    "msg",
    [
        PreVote(1, 2, Ballot(5, 3)),
        Prepare(1, 2, Ballot(5, 2), 1),
        Accept(1, 2, Ballot(5, 3), (), 0),
        Heartbeat(1, 2, Ballot(5, 3), 0, 0),
        Accept(1, 2, Ballot(0, 1), (), 0),
    ],
    ids=["PreVote", "Prepare", "Accept", "Heartbeat", "round-0"],
)
def test_a_ballot_not_the_senders_own_is_malformed(msg: Message) -> None:
    """Node 1 speaking in node 3's ballot would be believed as node 3, the leader: its
    Accept stored and its commit point learned."""
    with pytest.raises(MalformedMessageError, match="not one of its own"):
        codec.decode(codec.encode(msg, CLUSTER), CLUSTER, MEMBERS)


@pytest.mark.parametrize(
    "entries",
    [(4, 4), (5, 4), (0,)],
    ids=["repeated", "descending", "slot-0"],
)
def test_entries_out_of_order_are_malformed(entries: tuple[int, ...]) -> None:
    value = (Proposal(b"r", b"p"),)
    msg = Accept(1, 2, Ballot(3, 1), tuple(SlotValue(s, value) for s in entries), 9)
    with pytest.raises(MalformedMessageError, match="not ascending"):
        codec.decode(codec.encode(msg, CLUSTER), CLUSTER, MEMBERS)


@pytest.mark.parametrize(
    ("entries", "snapshot_slot"), [((5, 6), 0), ((), 8)], ids=["entries", "snapshot"]
)
def test_a_catch_up_reply_beyond_its_commit_is_malformed(
    entries: tuple[int, ...], snapshot_slot: int
) -> None:
    """A node sends only slots it knows are chosen: its commit bounds them."""
    value = (Proposal(b"r", b"p"),)
    msg = CatchUpReply(1, 2, tuple(SlotValue(s, value) for s in entries), 5, snapshot_slot)
    with pytest.raises(MalformedMessageError, match="beyond its commit 5"):
        codec.decode(codec.encode(msg, CLUSTER), CLUSTER, MEMBERS)


def test_missing_protocol_version_is_malformed() -> None:
    env = codec.encode(CatchUpRequest(1, 2, 5), CLUSTER)
    env.ClearField("protocol_version")
    with pytest.raises(MalformedMessageError, match="protocol_version"):
        codec.decode(env, CLUSTER, MEMBERS)


def test_missing_body_is_malformed() -> None:
    env = pb.Envelope(cluster_id=CLUSTER, protocol_version=codec.PROTOCOL_VERSION)
    with pytest.raises(MalformedMessageError, match="body"):
        codec.decode(env, CLUSTER, MEMBERS)


def test_unknown_body_type_is_malformed() -> None:
    """A message type from a newer node of the same protocol version: field 99 of Envelope
    is unknown here, so protobuf keeps it aside and the body reads as empty."""
    env = pb.Envelope(cluster_id=CLUSTER, protocol_version=codec.PROTOCOL_VERSION)
    data = env.SerializeToString() + b"\x9a\x06\x02\x08\x01"  # field 99, length 2: {1: 1}
    with pytest.raises(MalformedMessageError, match="body"):
        codec.decode_bytes(data, CLUSTER, MEMBERS)


def _ballot_fields(sample: Message) -> list[tuple[Message, str]]:
    env = codec.encode(sample, CLUSTER)
    kind = env.WhichOneof("body")
    assert kind is not None
    body = getattr(env, kind)
    return [
        (sample, field.name)
        for field in body.DESCRIPTOR.fields
        if field.message_type is pb.Ballot.DESCRIPTOR
    ]


BALLOT_FIELDS = [
    case
    for sample in (
        PreVote(1, 2, Ballot(1, 1)),
        PreVoteReply(1, 2, Ballot(1, 1), True, Ballot(1, 1)),
        Prepare(1, 2, Ballot(1, 1), 3),
        Promise(1, 2, Ballot(1, 1), True, Ballot(1, 1), (), 0),
        Accept(1, 2, Ballot(1, 1), (), 0),
        Accepted(1, 2, Ballot(1, 1), True, Ballot(1, 1), ()),
        Heartbeat(1, 2, Ballot(1, 1), 0, 0),
        HeartbeatReply(1, 2, Ballot(1, 1), True, Ballot(1, 1), 0),
    )
    for case in _ballot_fields(sample)
]


@pytest.mark.parametrize(
    ("sample", "field"), BALLOT_FIELDS, ids=[f"{type(m).__name__}.{f}" for m, f in BALLOT_FIELDS]
)
def test_missing_ballot_is_malformed(sample: Message, field: str) -> None:
    """An absent ballot must not read as the zero ballot."""
    env = codec.encode(sample, CLUSTER)
    kind = env.WhichOneof("body")
    assert kind is not None
    getattr(env, kind).ClearField(field)
    with pytest.raises(MalformedMessageError, match=field):
        codec.decode(env, CLUSTER, MEMBERS)


def test_missing_ballot_of_a_promised_entry_is_malformed() -> None:
    entry = LogEntry(4, Ballot(2, 1), (Proposal(b"r", b"p"),), chosen=False)
    env = codec.encode(Promise(1, 2, Ballot(3, 1), True, Ballot(3, 1), (entry,), 0), CLUSTER)
    env.promise.entries[0].ClearField("ballot")
    with pytest.raises(MalformedMessageError, match="LogEntry without ballot"):
        codec.decode(env, CLUSTER, MEMBERS)


def test_promise_part_ending_before_it_starts_is_malformed() -> None:
    env = codec.encode(Promise(1, 2, Ballot(3, 1), True, Ballot(3, 1), (), 0, 7, 9), CLUSTER)
    env.promise.last_slot = 6
    with pytest.raises(MalformedMessageError, match="slots 7 to 6"):
        codec.decode(env, CLUSTER, MEMBERS)


@DETERMINISTIC
@given(
    ints,
    ballots,
    st.lists(
        st.builds(Proposal, st.binary(max_size=300), st.binary(max_size=20_000)), max_size=3
    ).map(tuple),
    st.booleans(),
)
def test_entry_size_bounds_an_entry_on_the_wire(
    slot: int, ballot: Ballot, value: tuple[Proposal, ...], chosen: bool
) -> None:
    """The core splits messages by ``entry_size``: it must not undercount what the codec
    writes for an entry, in an Accept, a CatchUpReply or a Promise."""
    promise = Promise(1, 2, ballot, True, ballot, (LogEntry(slot, ballot, value, chosen),), 0)
    accept = Accept(1, 2, ballot, (SlotValue(slot, value),), 0)
    on_wire = (
        codec.encode(promise, CLUSTER).promise.entries[0],
        codec.encode(accept, CLUSTER).accept.entries[0],
    )
    for entry in on_wire:
        assert framed_size(entry.ByteSize()) <= entry_size(value), entry.ByteSize()


def _parses(data: bytes) -> bool:
    try:
        pb.Envelope.FromString(data)
    except DecodeError:
        return False
    return True


@settings(DETERMINISTIC, max_examples=1000)
@given(st.binary(max_size=300))
def test_garbage_raises_only_peer_message_errors(data: bytes) -> None:
    """Bytes that do not parse are malformed; bytes that happen to parse are judged like any
    envelope (mostly: no body, or no protocol version)."""
    try:
        codec.decode_bytes(data, CLUSTER, MEMBERS)
    except MalformedMessageError:
        pass
    except PeerMessageError:
        assert _parses(data), data
    else:
        assert _parses(data), data


@settings(DETERMINISTIC, max_examples=500)
@given(member_messages, st.data())
def test_damaged_envelope_raises_only_peer_message_errors(
    msg: Message, data: st.DataObject
) -> None:
    """Truncation and corrupted bytes of a real envelope, as a broken peer might send."""
    wire = bytearray(codec.encode(msg, CLUSTER).SerializeToString())
    cut = data.draw(st.integers(min_value=0, max_value=len(wire)), label="cut")
    del wire[cut:]
    for _ in range(data.draw(st.integers(min_value=0, max_value=3), label="flips")):
        if wire:
            at = data.draw(st.integers(min_value=0, max_value=len(wire) - 1), label="at")
            wire[at] = data.draw(st.integers(min_value=0, max_value=255), label="byte")
    with contextlib.suppress(PeerMessageError):
        codec.decode_bytes(bytes(wire), CLUSTER, MEMBERS)
