"""Every expected failure of relstorage_paxos, as specific exception classes.

Rooted in ZODB's exceptions so that ``transaction`` knows which ones a retry can cure:
``TransientError`` subclasses are retried by ``transaction.manager.attempts()``; plain
``StorageError`` subclasses are not (CONVENTIONS.md rule 5).
"""

from __future__ import annotations

from transaction.interfaces import TransientError
from ZODB.POSException import ReadConflictError, StorageError


class PaxosError(StorageError):
    """Base of every relstorage_paxos error."""


class PaxosTransientError(PaxosError, TransientError):
    """A failure that retrying the whole transaction can cure (no quorum for now, leader
    change, timeout with a known outcome)."""


class PeerMessageError(PaxosError):
    """A message from a peer that this node drops without showing it to its core. Paxos
    tolerates lost messages, so the transport logs it and carries on; it never reaches an
    application."""


class MalformedMessageError(PeerMessageError):
    """Bytes that are no well-formed peer message: unparseable, no body, a field missing or
    out of range."""


class WrongClusterError(PeerMessageError):
    """A well-formed message addressed to another cluster (a misconfigured peer list, or an
    address reused by another cluster's node)."""


class UnknownNodeError(PeerMessageError):
    """A well-formed message from a node id that is not a member of this cluster."""


class ProtocolVersionError(PeerMessageError):
    """A message in a peer protocol version this node does not speak (a rolling upgrade
    went too far, or a node too old joined)."""


class LogStoreError(PaxosError):
    """The acceptor's durable log could not be read or written: the file is missing, corrupt,
    locked, or belongs to another cluster or node, or a write or fsync failed.

    Not transient: the node must stop, because an acceptor that forgets a promise breaks
    Paxos, and a failed fsync cannot be retried safely (the kernel may drop the dirty pages).
    """


class ReplicaError(PaxosError):
    """A replica file cannot be used as asked (``relstorage_paxos.replica``).

    Not transient: the file, the configuration or the snapshot must change first.
    """


class HistoryModeMismatch(ReplicaError):
    """The replica was created history-free and is opened history-preserving, or the reverse.

    The mode is fixed when a replica is created; converting needs zodbconvert, as for stock
    RelStorage.
    """


class ReplicaFormatError(ReplicaError):
    """The file is not a relstorage_paxos replica, or one of a format version this code does
    not know."""


class ReplicaBehindLogError(ReplicaError):
    """The replica has applied fewer slots than the log still holds (an old copy of the file
    restored, or the file lost), and no peer sent a snapshot to replace it."""


class StaleSnapshot(ReplicaError):
    """A snapshot would move the replica back to an earlier slot than it has applied."""


class MalformedRecord(PaxosError):
    """A log record (or a recorded outcome) that is not well formed: undecodable bytes, an
    unknown record version, or field values outside their domain (empty ids, OIDs above
    2**63 - 1, a blob for an object the commit does not write).

    The applier turns it into a ``Rejected`` outcome, the same on every replica; a proposer
    that builds such a record gets it before proposing anything.
    """


class SettingsError(PaxosError):
    """A node's settings file or a ``<paxos>`` section names something a node cannot run
    with; the message names the file (or section) and the key."""


class DataDirError(PaxosError):
    """A data directory that this node cannot use: missing, from another cluster or node,
    or held by a running node (the message says which, and what to do)."""


class NodeUnavailableError(PaxosTransientError):
    """The node's Sequencer could not be reached (not running, socket missing, shutting
    down); nothing was proposed."""


class ReadBarrierError(PaxosTransientError, ReadConflictError):
    """A poll could not establish its consistency barrier (the node unreachable, no quorum,
    a replica out of sync beyond ``max-lag``). A ``ReadConflictError`` because RelStorage
    postpones exactly those from a poll to the next read or write of the transaction, after
    resetting the connection's object cache: ``DB.open()``, ``begin()``, ``abort()`` and
    the poll after a commit never raise it (ZODB is not prepared for that, and a failing
    ``DB.open()`` leaks the connection from its pool), and no cached object is served
    unfenced."""


class NoQuorumError(PaxosTransientError):
    """The node has heard from no leader for longer than an election takes: it is cut off
    from a quorum, so it refuses read barriers at once instead of letting them time out."""


class OutcomeUnknownError(PaxosTransientError):
    """A proposal was sent but its outcome did not arrive in time. It may still be applied:
    retry with the same request id, which returns the recorded outcome if it was."""


class RequestRejectedError(PaxosError):
    """The node refused a request it will never accept as sent (malformed, too large)."""


class RecordTooLargeError(RequestRejectedError):
    """A record (one transaction's objects and blobs, as committed) over the node's
    ``max-record-bytes``. Refused before it is proposed: the node and its other proposals
    are unaffected. Not transient: the same transaction is refused again until it is made
    smaller or the limit raised."""

    @classmethod
    def of(cls, what: str, size: int, limit: int) -> RecordTooLargeError:
        return cls(
            f"{what} of {size} bytes ({size / (1 << 20):.1f} MiB) is over max-record-bytes"
            f" ({limit} bytes): commit less in one transaction, or raise max-record-bytes"
            " in the node.toml of every node (up to 512 MiB) and restart them"
        )


class WrongDestinationError(PeerMessageError):
    """A well-formed message from a member, addressed to another member: the sender's peer
    list maps that member's id to this node's address (a misconfiguration, or an address
    that moved)."""


class SnapshotTransferError(PaxosError):
    """A replica snapshot could not be fetched from a peer: the peer has none covering the
    requested slot, the call failed or timed out, or a chunk, the size or the whole-file
    SHA-256 did not match (``PeerTransport.fetch_snapshot``).

    No partial file is left behind. Not a ``TransientError``: no ZODB transaction is
    involved; the runtime retries the fetch, from the same or another peer.
    """


class ReplicaTooStaleError(PaxosTransientError):
    """Under ``consistency local``, the node has not been in sync with a leader for longer
    than ``max-lag``: the read is refused rather than served from data that old."""


class NotReplicatedError(PaxosError):
    """An operation the adapter cannot express as log records (zap_all, committing at vote
    with RELSTORAGE_LOCK_EARLY): it is refused, never run against one replica only."""


class PackError(PaxosError):
    """A pack that cannot go on: a pack record was refused by the applier (the message
    says why), or ``skip_prepack`` found no plan from an earlier ``prepack_only`` pack in
    this process. What was applied before stays applied; packing again plans afresh."""
