from relstorage_paxos.pb import peer_pb2 as _peer_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_FOLLOWER: _ClassVar[Role]
    ROLE_PRE_CANDIDATE: _ClassVar[Role]
    ROLE_CANDIDATE: _ClassVar[Role]
    ROLE_LEADER: _ClassVar[Role]
    ROLE_LEARNER: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_FOLLOWER: Role
ROLE_PRE_CANDIDATE: Role
ROLE_CANDIDATE: Role
ROLE_LEADER: Role
ROLE_LEARNER: Role

class ProposeRequest(_message.Message):
    __slots__ = ("cluster_id", "request_id", "record", "timeout_ms")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    request_id: bytes
    record: bytes
    timeout_ms: int
    def __init__(self, cluster_id: _Optional[str] = ..., request_id: _Optional[bytes] = ..., record: _Optional[bytes] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class ProposeReply(_message.Message):
    __slots__ = ("slot", "outcome")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    slot: int
    outcome: bytes
    def __init__(self, slot: _Optional[int] = ..., outcome: _Optional[bytes] = ...) -> None: ...

class ReadIndexRequest(_message.Message):
    __slots__ = ("cluster_id",)
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    def __init__(self, cluster_id: _Optional[str] = ...) -> None: ...

class ReadIndexReply(_message.Message):
    __slots__ = ("slot",)
    SLOT_FIELD_NUMBER: _ClassVar[int]
    slot: int
    def __init__(self, slot: _Optional[int] = ...) -> None: ...

class WaitAppliedRequest(_message.Message):
    __slots__ = ("cluster_id", "slot", "timeout_ms")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    slot: int
    timeout_ms: int
    def __init__(self, cluster_id: _Optional[str] = ..., slot: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class WaitAppliedReply(_message.Message):
    __slots__ = ("applied_slot",)
    APPLIED_SLOT_FIELD_NUMBER: _ClassVar[int]
    applied_slot: int
    def __init__(self, applied_slot: _Optional[int] = ...) -> None: ...

class AllocateOidsRequest(_message.Message):
    __slots__ = ("cluster_id", "count")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    count: int
    def __init__(self, cluster_id: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class AllocateOidsReply(_message.Message):
    __slots__ = ("start", "count")
    START_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    start: int
    count: int
    def __init__(self, start: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("cluster_id",)
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    def __init__(self, cluster_id: _Optional[str] = ...) -> None: ...

class PeerStatus(_message.Message):
    __slots__ = ("node_id", "address", "reachable", "last_heard_ms_ago", "chosen_slot", "applied_slot")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARD_MS_AGO_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_SLOT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SLOT_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    address: str
    reachable: bool
    last_heard_ms_ago: int
    chosen_slot: int
    applied_slot: int
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ..., reachable: _Optional[bool] = ..., last_heard_ms_ago: _Optional[int] = ..., chosen_slot: _Optional[int] = ..., applied_slot: _Optional[int] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("node_id", "cluster_id", "role", "leader_id", "ballot", "chosen_slot", "applied_slot", "truncated_slot", "last_tid", "running_hash", "serving", "not_serving_reason", "peers", "uptime_s", "protocol_version", "software_version", "pid", "data_dir_bytes", "wal_bytes", "disk_free_bytes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    BALLOT_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_SLOT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SLOT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_SLOT_FIELD_NUMBER: _ClassVar[int]
    LAST_TID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_HASH_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    NOT_SERVING_REASON_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_BYTES_FIELD_NUMBER: _ClassVar[int]
    WAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    cluster_id: str
    role: Role
    leader_id: int
    ballot: _peer_pb2.Ballot
    chosen_slot: int
    applied_slot: int
    truncated_slot: int
    last_tid: int
    running_hash: bytes
    serving: bool
    not_serving_reason: str
    peers: _containers.RepeatedCompositeFieldContainer[PeerStatus]
    uptime_s: float
    protocol_version: int
    software_version: str
    pid: int
    data_dir_bytes: int
    wal_bytes: int
    disk_free_bytes: int
    def __init__(self, node_id: _Optional[int] = ..., cluster_id: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., leader_id: _Optional[int] = ..., ballot: _Optional[_Union[_peer_pb2.Ballot, _Mapping]] = ..., chosen_slot: _Optional[int] = ..., applied_slot: _Optional[int] = ..., truncated_slot: _Optional[int] = ..., last_tid: _Optional[int] = ..., running_hash: _Optional[bytes] = ..., serving: _Optional[bool] = ..., not_serving_reason: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[PeerStatus, _Mapping]]] = ..., uptime_s: _Optional[float] = ..., protocol_version: _Optional[int] = ..., software_version: _Optional[str] = ..., pid: _Optional[int] = ..., data_dir_bytes: _Optional[int] = ..., wal_bytes: _Optional[int] = ..., disk_free_bytes: _Optional[int] = ...) -> None: ...
