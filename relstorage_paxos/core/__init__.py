"""The Multi-Paxos protocol as a pure state machine (no I/O, clock, threads or global
randomness). The runtime and the simulator drive the same ``Node``; see ``node.py``."""

from relstorage_paxos.core.ballot import ZERO_BALLOT, Ballot
from relstorage_paxos.core.messages import (
    NOOP,
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
    ProposalTooLarge,
    ReadIndexReply,
    ReadIndexRequest,
    SlotValue,
    Value,
)
from relstorage_paxos.core.node import Node, Role
from relstorage_paxos.core.options import NodeOptions
from relstorage_paxos.core.ready import (
    Persist,
    PersistentState,
    ReadState,
    Ready,
    SnapshotRequest,
)

__all__ = [
    "NOOP",
    "ZERO_BALLOT",
    "Accept",
    "Accepted",
    "Ballot",
    "CatchUpReply",
    "CatchUpRequest",
    "Forward",
    "Heartbeat",
    "HeartbeatReply",
    "LogEntry",
    "Message",
    "Node",
    "NodeOptions",
    "Persist",
    "PersistentState",
    "PreVote",
    "PreVoteReply",
    "Prepare",
    "Promise",
    "Proposal",
    "ProposalTooLarge",
    "ReadIndexReply",
    "ReadIndexRequest",
    "ReadState",
    "Ready",
    "Role",
    "SlotValue",
    "SnapshotRequest",
    "Value",
]
