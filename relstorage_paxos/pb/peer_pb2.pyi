from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ballot(_message.Message):
    __slots__ = ("round", "node_id")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    round: int
    node_id: int
    def __init__(self, round: _Optional[int] = ..., node_id: _Optional[int] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("request_id", "payload")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    request_id: bytes
    payload: bytes
    def __init__(self, request_id: _Optional[bytes] = ..., payload: _Optional[bytes] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("slot", "ballot", "value", "chosen")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    slot: int
    ballot: Ballot
    value: _containers.RepeatedCompositeFieldContainer[Proposal]
    chosen: bool
    def __init__(self, slot: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., value: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ..., chosen: _Optional[bool] = ...) -> None: ...

class SlotValue(_message.Message):
    __slots__ = ("slot", "value")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    slot: int
    value: _containers.RepeatedCompositeFieldContainer[Proposal]
    def __init__(self, slot: _Optional[int] = ..., value: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ...) -> None: ...

class PreVote(_message.Message):
    __slots__ = ("src", "dst", "ballot")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ...) -> None: ...

class PreVoteReply(_message.Message):
    __slots__ = ("src", "dst", "ballot", "ok", "promised")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    PROMISED_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., ok: _Optional[bool] = ..., promised: _Optional[_Union[Ballot, _Mapping]] = ...) -> None: ...

class Prepare(_message.Message):
    __slots__ = ("src", "dst", "ballot", "from_slot")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    FROM_SLOT_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    from_slot: int
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., from_slot: _Optional[int] = ...) -> None: ...

class Promise(_message.Message):
    __slots__ = ("src", "dst", "ballot", "ok", "promised", "entries", "commit", "first_slot", "last_slot", "prior")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    PROMISED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SLOT_FIELD_NUMBER: _ClassVar[int]
    LAST_SLOT_FIELD_NUMBER: _ClassVar[int]
    PRIOR_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    commit: int
    first_slot: int
    last_slot: int
    prior: Ballot
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., ok: _Optional[bool] = ..., promised: _Optional[_Union[Ballot, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., commit: _Optional[int] = ..., first_slot: _Optional[int] = ..., last_slot: _Optional[int] = ..., prior: _Optional[_Union[Ballot, _Mapping]] = ...) -> None: ...

class Accept(_message.Message):
    __slots__ = ("src", "dst", "ballot", "entries", "commit", "finished")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    entries: _containers.RepeatedCompositeFieldContainer[SlotValue]
    commit: int
    finished: int
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[SlotValue, _Mapping]]] = ..., commit: _Optional[int] = ..., finished: _Optional[int] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("src", "dst", "ballot", "ok", "promised", "slots")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    PROMISED_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    slots: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., ok: _Optional[bool] = ..., promised: _Optional[_Union[Ballot, _Mapping]] = ..., slots: _Optional[_Iterable[int]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("src", "dst", "ballot", "commit", "read_seq", "finished", "lease_seq", "sent_us", "lease_reply_us")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    LEASE_SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_US_FIELD_NUMBER: _ClassVar[int]
    LEASE_REPLY_US_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    commit: int
    read_seq: int
    finished: int
    lease_seq: int
    sent_us: int
    lease_reply_us: int
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., commit: _Optional[int] = ..., read_seq: _Optional[int] = ..., finished: _Optional[int] = ..., lease_seq: _Optional[int] = ..., sent_us: _Optional[int] = ..., lease_reply_us: _Optional[int] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("src", "dst", "ballot", "ok", "promised", "read_seq", "commit")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    PROMISED_FIELD_NUMBER: _ClassVar[int]
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    ballot: Ballot
    ok: bool
    promised: Ballot
    read_seq: int
    commit: int
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., ballot: _Optional[_Union[Ballot, _Mapping]] = ..., ok: _Optional[bool] = ..., promised: _Optional[_Union[Ballot, _Mapping]] = ..., read_seq: _Optional[int] = ..., commit: _Optional[int] = ...) -> None: ...

class Forward(_message.Message):
    __slots__ = ("src", "dst", "proposals")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    proposals: _containers.RepeatedCompositeFieldContainer[Proposal]
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., proposals: _Optional[_Iterable[_Union[Proposal, _Mapping]]] = ...) -> None: ...

class ReadIndexRequest(_message.Message):
    __slots__ = ("src", "dst", "request_ids")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    request_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., request_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReadIndexReply(_message.Message):
    __slots__ = ("src", "dst", "request_ids", "slot")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    request_ids: _containers.RepeatedScalarFieldContainer[bytes]
    slot: int
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., request_ids: _Optional[_Iterable[bytes]] = ..., slot: _Optional[int] = ...) -> None: ...

class CatchUpRequest(_message.Message):
    __slots__ = ("src", "dst", "from_slot")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    FROM_SLOT_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    from_slot: int
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., from_slot: _Optional[int] = ...) -> None: ...

class CatchUpReply(_message.Message):
    __slots__ = ("src", "dst", "entries", "commit", "snapshot_slot")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SLOT_FIELD_NUMBER: _ClassVar[int]
    src: int
    dst: int
    entries: _containers.RepeatedCompositeFieldContainer[SlotValue]
    commit: int
    snapshot_slot: int
    def __init__(self, src: _Optional[int] = ..., dst: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[SlotValue, _Mapping]]] = ..., commit: _Optional[int] = ..., snapshot_slot: _Optional[int] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("cluster_id", "protocol_version", "pre_vote", "pre_vote_reply", "prepare", "promise", "accept", "accepted", "heartbeat", "heartbeat_reply", "forward", "read_index_request", "read_index_reply", "catch_up_request", "catch_up_reply")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRE_VOTE_FIELD_NUMBER: _ClassVar[int]
    PRE_VOTE_REPLY_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    PROMISE_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_REPLY_FIELD_NUMBER: _ClassVar[int]
    FORWARD_FIELD_NUMBER: _ClassVar[int]
    READ_INDEX_REQUEST_FIELD_NUMBER: _ClassVar[int]
    READ_INDEX_REPLY_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_REPLY_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    protocol_version: int
    pre_vote: PreVote
    pre_vote_reply: PreVoteReply
    prepare: Prepare
    promise: Promise
    accept: Accept
    accepted: Accepted
    heartbeat: Heartbeat
    heartbeat_reply: HeartbeatReply
    forward: Forward
    read_index_request: ReadIndexRequest
    read_index_reply: ReadIndexReply
    catch_up_request: CatchUpRequest
    catch_up_reply: CatchUpReply
    def __init__(self, cluster_id: _Optional[str] = ..., protocol_version: _Optional[int] = ..., pre_vote: _Optional[_Union[PreVote, _Mapping]] = ..., pre_vote_reply: _Optional[_Union[PreVoteReply, _Mapping]] = ..., prepare: _Optional[_Union[Prepare, _Mapping]] = ..., promise: _Optional[_Union[Promise, _Mapping]] = ..., accept: _Optional[_Union[Accept, _Mapping]] = ..., accepted: _Optional[_Union[Accepted, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., heartbeat_reply: _Optional[_Union[HeartbeatReply, _Mapping]] = ..., forward: _Optional[_Union[Forward, _Mapping]] = ..., read_index_request: _Optional[_Union[ReadIndexRequest, _Mapping]] = ..., read_index_reply: _Optional[_Union[ReadIndexReply, _Mapping]] = ..., catch_up_request: _Optional[_Union[CatchUpRequest, _Mapping]] = ..., catch_up_reply: _Optional[_Union[CatchUpReply, _Mapping]] = ...) -> None: ...

class EnvelopeBatch(_message.Message):
    __slots__ = ("envelopes",)
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedCompositeFieldContainer[Envelope]
    def __init__(self, envelopes: _Optional[_Iterable[_Union[Envelope, _Mapping]]] = ...) -> None: ...

class StreamAck(_message.Message):
    __slots__ = ("batches_received", "envelopes_received")
    BATCHES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    batches_received: int
    envelopes_received: int
    def __init__(self, batches_received: _Optional[int] = ..., envelopes_received: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("cluster_id", "requester_id", "min_slot")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_SLOT_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    requester_id: int
    min_slot: int
    def __init__(self, cluster_id: _Optional[str] = ..., requester_id: _Optional[int] = ..., min_slot: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("slot", "file_size", "offset", "data", "sha256", "file_sha256")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FILE_SHA256_FIELD_NUMBER: _ClassVar[int]
    slot: int
    file_size: int
    offset: int
    data: bytes
    sha256: bytes
    file_sha256: bytes
    def __init__(self, slot: _Optional[int] = ..., file_size: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[bytes] = ..., file_sha256: _Optional[bytes] = ...) -> None: ...
