"""Seeded generators of hostile bytes: random protobuf messages of any type in a file's
schema, with values at the edges of every integer range, and byte-level mutations of
serialized messages. Shared by the live-cluster fuzzer and the simulator's malformed mode;
everything is drawn from the ``random.Random`` given, so a seed replays the inputs."""

from __future__ import annotations

import random
from typing import Final

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as PbMessage

EDGE_INTS: Final = (
    0,
    1,
    2,
    3,
    9,
    127,
    128,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**53 + 1,
    2**62,
    2**63 - 2,
    2**63 - 1,
    2**63,
    2**64 - 1,
)
"""Unsigned values where ranges end: one-byte varints, int32, uint32, doubles, int64."""

_RANGES: Final = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def random_int(rng: random.Random, low: int, high: int, small: int = 8) -> int:
    """Mostly small values (those a protocol uses), often an edge of some range."""
    roll = rng.random()
    if roll < 0.5:
        value = rng.randint(0, small)
    elif roll < 0.85:
        value = rng.choice(EDGE_INTS)
        if low < 0 and rng.random() < 0.3:
            value = -value
    else:
        value = rng.randint(low, high)
    return min(max(value, low), high)


def random_message(
    descriptor: Descriptor, rng: random.Random, *, depth: int = 0, bytes_max: int = 48
) -> PbMessage:
    """A message of ``descriptor``'s type with every field set or left at random: one
    member of each oneof at most, up to three elements in repeated fields, nesting cut off
    at depth 4. Such messages parse; what they say is the receiver's to judge."""
    msg = message_factory.GetMessageClass(descriptor)()
    for oneof in descriptor.oneofs:
        chosen = rng.choice(oneof.fields)
        _fill(msg, chosen, rng, depth, bytes_max)
    for f in descriptor.fields:
        if f.containing_oneof is not None or rng.random() < 0.2:
            continue
        _fill(msg, f, rng, depth, bytes_max)
    return msg


def _fill(msg: PbMessage, f: FieldDescriptor, rng: random.Random, depth: int, n: int) -> None:
    repeated = f.is_repeated
    count = rng.randint(0, 3) if repeated else 1
    for _ in range(count):
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 4:
                return
            child = random_message(f.message_type, rng, depth=depth + 1, bytes_max=n)
            if repeated:
                getattr(msg, f.name).add().CopyFrom(child)
            else:
                getattr(msg, f.name).CopyFrom(child)
            continue
        value = _scalar(f, rng, n)
        if repeated:
            getattr(msg, f.name).append(value)
        else:
            setattr(msg, f.name, value)


def _scalar(f: FieldDescriptor, rng: random.Random, n: int) -> object:
    if f.type in _RANGES:
        return random_int(rng, *_RANGES[f.type])
    if f.type == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if f.type == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in f.enum_type.values]
        return rng.choice(numbers) if rng.random() < 0.8 else rng.randint(-3, 40)
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice((0.0, -1.0, 1e300, float("inf"), float("nan"), rng.random()))
    data = rng.randbytes(rng.randint(0, n))
    if f.type == FieldDescriptor.TYPE_STRING:
        return data.decode("latin-1")
    return data


def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with one to four byte-level edits: a flipped bit, an edge byte, bytes
    inserted, cut out or repeated, a truncation, or a ten-byte varint spliced in."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randint(0, len(buf))
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
        elif op == 2:
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and buf:
            del buf[at : at + rng.randint(1, 8)]
        elif op == 4:
            del buf[at:]
        elif op == 5 and buf:
            start = rng.randrange(len(buf))
            buf[at:at] = buf[start : start + rng.randint(1, 16)]
        else:
            buf[at:at] = b"\xff" * 9 + b"\x01"
    return bytes(buf)
