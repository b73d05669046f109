"""The sending half of the peer transport: one bounded queue, one long-lived ``Stream`` call and
one sender thread per peer.

Owns: ``OutboundQueue`` (serialized envelopes for one peer; full ⇒ the oldest are dropped,
since Paxos retransmits), ``frame_batch`` (envelopes → one ``EnvelopeBatch`` on the wire) and
``PeerSender`` (keeps a ``Stream`` call open to its peer and restarts it when it fails).
Must not import: ``runtime``, ``log``, ``replica``.
Called by: the runtime's thread (``OutboundQueue.put`` via ``PeerTransport.send``); the
sender's own thread (the call's lifecycle); gRPC's request-consumption thread, which pulls
batches from ``_BatchFeed`` whenever the previous one has been written, so whatever queued up
meanwhile goes out as one batch: batching adapts to the load by itself.

Why a stream, not unary calls: a Python gRPC unary round trip costs ~0.65 ms of mostly CPU on
loopback (notes/perf-anchors.md §2a, §3); a message on an open stream costs a fraction of that
(``scripts/bench/peer_stream.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import grpc

from relstorage_paxos.pb import peer_pb2 as pb
from relstorage_paxos.transport.channels import STREAM_METHOD
from relstorage_paxos.transport.log_limit import LogLimiter, suppressed_note

logger = logging.getLogger(__name__)

_BATCH_ENVELOPES_TAG: Final = b"\x0a"
"""Field 1 (``EnvelopeBatch.envelopes``), wire type 2 (length-delimited)."""

RETRY_DELAY_MIN_S: Final = 0.05
RETRY_DELAY_MAX_S: Final = 1.0
_JOIN_AFTER_CANCEL_S: Final = 2.0
_HEALTHY_CALL_S: Final = 2.0
"""A call that lasted this long before it failed was healthy; the next one starts at once."""


def retry_delay(previous_s: float, healthy: bool) -> float:
    """The pause before the next call after one that failed: none after a call that ran
    for a while (a peer that restarted), else doubling from ``RETRY_DELAY_MIN_S`` up to
    ``RETRY_DELAY_MAX_S`` (a peer that rejects every stream is not hammered)."""
    if healthy:
        return 0.0
    return min(RETRY_DELAY_MAX_S, max(RETRY_DELAY_MIN_S, 2 * previous_s))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def framed_size(envelope_bytes: int) -> int:
    """Bytes one serialized envelope of this size takes inside an ``EnvelopeBatch``."""
    return 1 + len(_varint(envelope_bytes)) + envelope_bytes


def frame_batch(envelopes: Sequence[bytes]) -> bytes:
    """The serialized ``EnvelopeBatch`` holding these serialized envelopes, in order.

    Built by concatenation (protobuf's wire format for a repeated message field) rather than
    ``EnvelopeBatch(envelopes=...)``: that would parse or copy each envelope again, which for a
    large Accept costs more than the whole send (codec.py's note on copies)."""
    parts: list[bytes] = []
    for env in envelopes:
        parts += (_BATCH_ENVELOPES_TAG, _varint(len(env)), env)
    return b"".join(parts)


@dataclass(slots=True)
class LinkStats:
    """Counters of one outbound link; a snapshot is returned by ``PeerTransport.stats``."""

    queued: int = 0
    """Envelopes waiting in the queue now."""
    sent_messages: int = 0
    """Envelopes handed to gRPC (not necessarily received)."""
    sent_batches: int = 0
    dropped_messages: int = 0
    """Envelopes dropped from a full queue, or still queued at close."""
    streams_started: int = 0


class OutboundQueue:
    """Serialized envelopes waiting for one peer, bounded in count and bytes."""

    def __init__(self, messages_max: int, bytes_max: int) -> None:
        assert messages_max > 0, messages_max
        assert bytes_max > 0, bytes_max
        self._messages_max = messages_max
        self._bytes_max = bytes_max
        self.cond = threading.Condition()
        self._items: deque[bytes] = deque()
        self._bytes = 0
        self.stats = LinkStats()

    def put(self, envelopes: Sequence[bytes]) -> None:
        """Append; if that overfills the queue, drop from the front (the oldest)."""
        with self.cond:
            for env in envelopes:
                self._items.append(env)
                self._bytes += len(env)
            while len(self._items) > self._messages_max or (
                self._bytes > self._bytes_max and len(self._items) > 1
            ):
                self._bytes -= len(self._items.popleft())
                self.stats.dropped_messages += 1
            self.cond.notify()

    def take_batch(self, batch_bytes_max: int, feed: _BatchFeed) -> bytes | None:
        """Wait until something is queued or ``feed`` is stopped; then the framed batch of as
        many queued envelopes as fit in ``batch_bytes_max`` (always at least one), or ``None``
        once stopped."""
        with self.cond:
            while not self._items and not feed.stopped:
                self.cond.wait()
            if feed.stopped:
                return None
            taken = [self._items.popleft()]
            size = framed_size(len(taken[0]))
            while self._items and size + framed_size(len(self._items[0])) <= batch_bytes_max:
                env = self._items.popleft()
                size += framed_size(len(env))
                taken.append(env)
            self._bytes -= sum(len(env) for env in taken)
            self.stats.sent_messages += len(taken)
            self.stats.sent_batches += 1
        return frame_batch(taken)

    def clear(self) -> None:
        """Drop everything queued (at close)."""
        with self.cond:
            self.stats.dropped_messages += len(self._items)
            self._items.clear()
            self._bytes = 0

    def snapshot_stats(self) -> LinkStats:
        with self.cond:
            s = self.stats
            return LinkStats(
                len(self._items),
                s.sent_messages,
                s.sent_batches,
                s.dropped_messages,
                s.streams_started,
            )


class _BatchFeed(Iterator[bytes]):
    """The request iterator of one ``Stream`` call: batches from the queue until stopped.

    Stopped when the call ends (so gRPC's consumption thread, blocked waiting for messages,
    returns) or at close (so the client half-closes the stream)."""

    def __init__(self, queue: OutboundQueue, batch_bytes_max: int) -> None:
        self._queue = queue
        self._batch_bytes_max = batch_bytes_max
        self.stopped = False
        self._handed_out = False
        self.wrote = False
        """A batch was written: gRPC asks for the next one only once the previous one is."""

    def __next__(self) -> bytes:
        self.wrote = self._handed_out
        batch = self._queue.take_batch(self._batch_bytes_max, self)
        self._handed_out = self._handed_out or batch is not None
        if batch is None:
            raise StopIteration
        return batch

    def stop(self) -> None:
        with self._queue.cond:
            self.stopped = True
            self._queue.cond.notify_all()


class PeerSender:
    """Keeps one ``Stream`` call open to one peer and feeds it from an ``OutboundQueue``.

    The call is made with ``wait_for_ready=True``: while the peer is unreachable it waits for
    the channel (which reconnects with the short backoff of ``channels.client_options``)
    instead of failing at once, so the first batch goes out as soon as the peer is back. A
    call that ends for any reason is logged (rate-limited) and replaced; batches in flight on
    it are lost, never resent (a resend could duplicate them).
    """

    def __init__(
        self,
        *,
        node_id: int,
        peer_id: int,
        address: str,
        channel: grpc.Channel,
        queue: OutboundQueue,
        batch_bytes_max: int,
        limiter: LogLimiter,
    ) -> None:
        self._node_id = node_id
        self._peer_id = peer_id
        self._address = address
        self._channel = channel
        self._queue = queue
        self._batch_bytes_max = batch_bytes_max
        self._limiter = limiter
        self._stream: grpc.StreamUnaryMultiCallable[bytes, pb.StreamAck] = channel.stream_unary(
            STREAM_METHOD,
            request_serializer=None,  # the feed yields serialized batches already
            response_deserializer=pb.StreamAck.FromString,
        )
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._call: grpc.Future[pb.StreamAck] | None = None
        self._feed: _BatchFeed | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"paxos-send-{node_id}-to-{peer_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def begin_close(self) -> None:
        """Stop the feed: the stream half-closes, so the peer ends it with a StreamAck instead
        of seeing it cancelled. The queue is left alone (its owner may hand it to a new
        sender). Returns at once."""
        with self._lock:
            self._closing.set()
            if self._feed is not None:
                self._feed.stop()

    def finish_close(self, deadline_s: float) -> None:
        """Wait (until ``deadline_s`` on ``time.monotonic``) for the call to end after
        ``begin_close``, then cancel it if it has not, join the thread and close the channel.

        Waits only if the call has written a batch: a peer that is down never answers, and
        watching the channel's connectivity instead would cost a polling thread per channel
        (and 100 ms in ``channel.close``)."""
        with self._lock:
            wrote = self._feed is not None and self._feed.wrote
        if self._thread.is_alive() and wrote:
            self._thread.join(max(0.0, deadline_s - time.monotonic()))
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(_JOIN_AFTER_CANCEL_S)
        if self._thread.is_alive():
            logger.warning(
                "node %d: sender thread to node %d did not stop", self._node_id, self._peer_id
            )
        self._channel.close()

    def _run(self) -> None:
        """The sender thread: one call after another until closed. Calls that fail quickly
        in a row (a peer that rejects every stream) are spaced out, up to
        ``RETRY_DELAY_MAX_S``; gRPC itself paces reconnecting to a peer that is down."""
        delay_s = 0.0
        while not self._closing.wait(delay_s):
            started_s = time.monotonic()
            try:
                error = self._one_call()
            except Exception:
                # Not expected from gRPC; logged, and the sender carries on rather than
                # leaving this peer without messages for the rest of the node's life.
                logger.exception(
                    "node %d: sender to node %d at %s failed",
                    self._node_id,
                    self._peer_id,
                    self._address,
                )
                delay_s = RETRY_DELAY_MAX_S
                continue
            if error is None or self._closing.is_set():
                delay_s = 0.0
                continue
            delay_s = retry_delay(delay_s, time.monotonic() - started_s >= _HEALTHY_CALL_S)
            self._log_call_end(error)

    def _one_call(self) -> grpc.RpcError | None:
        """Run one ``Stream`` call until it ends; the error it ended with, if any."""
        feed = _BatchFeed(self._queue, self._batch_bytes_max)
        with self._lock:
            if self._closing.is_set():
                return None
            call = self._stream.future(feed, wait_for_ready=True)
            self._call, self._feed = call, feed
        with self._queue.cond:
            self._queue.stats.streams_started += 1
        # The moment the call ends, stop the feed: gRPC's consumption thread may be blocked in
        # it, and must neither stay blocked nor take a batch that can no longer be sent.
        call.add_done_callback(lambda _: feed.stop())
        try:
            call.result()
        except grpc.FutureCancelledError:
            return None
        except grpc.RpcError as e:
            return e
        finally:
            feed.stop()
            with self._lock:
                self._call = self._feed = None
        return None

    def _log_call_end(self, error: grpc.RpcError) -> None:
        code = error.code() if isinstance(error, grpc.Call) else None
        details = (error.details() if isinstance(error, grpc.Call) else None) or str(error)
        suppressed = self._limiter.allow(("stream-ended", self._peer_id, code))
        if suppressed is None:
            return
        # A peer that rejects our messages is misconfigured (or we are): say so louder than a
        # peer that is merely down or restarting.
        level = logging.INFO if code in _ROUTINE_CODES else logging.WARNING
        logger.log(
            level,
            "node %d: stream to node %d at %s ended: %s %s; reopening%s",
            self._node_id,
            self._peer_id,
            self._address,
            code.name if code is not None else "?",
            details,
            suppressed_note(suppressed),
        )


_ROUTINE_CODES: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}
)
