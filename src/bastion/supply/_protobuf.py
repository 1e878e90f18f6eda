"""A minimal protobuf wire-format reader: fields of one message, nothing decoded beyond that.

The scanner walks ONNX files (protobuf ``ModelProto`` messages) without the ``onnx`` package
and without building the message: it only needs a few fields (names, domains, external data
references) and must stay safe on hostile input. This module reads the wire format
(https://protobuf.dev/programming-guides/encoding/): a message is a sequence of
``key = field_number << 3 | wire_type`` varints, each followed by a varint (type 0), 8 bytes
(type 1), a length-prefixed payload (type 2) or 4 bytes (type 5). Groups (types 3 and 4) are
deprecated and never used by ONNX; they are treated as malformed input.

Every length is checked against the bytes that are left, so a truncated or lying message
raises :class:`ProtobufError` (a ``ValueError``) instead of reading past its end. Payloads are
``memoryview`` slices of the caller's buffer: nothing is copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

__all__ = [
    "FIXED32",
    "FIXED64",
    "LEN",
    "VARINT",
    "Field",
    "ProtobufError",
    "iter_fields",
    "read_varint",
]

VARINT = 0
FIXED64 = 1
LEN = 2
FIXED32 = 5

_MAX_VARINT_BYTES = 10  # a 64-bit value needs at most 10 groups of 7 bits
_EMPTY = memoryview(b"")


class ProtobufError(ValueError):
    """The bytes are not a well-formed protobuf message (truncated, or a bad key or length)."""


class Field(NamedTuple):
    """One field of a message.

    Attributes:
        number: the field number (>= 1).
        wire: the wire type (:data:`VARINT`, :data:`FIXED64`, :data:`LEN`, :data:`FIXED32`).
        offset: absolute offset of the field's value (of the payload for :data:`LEN`).
        value: the number for varint and fixed fields; the payload length for :data:`LEN`.
        payload: the bytes of a :data:`LEN` field (empty for the other wire types).
    """

    number: int
    wire: int
    offset: int
    value: int
    payload: memoryview

    def message(self) -> memoryview:
        """The payload of a field that must be a nested message (or string, or bytes)."""
        if self.wire != LEN:
            raise ProtobufError(
                f"field {self.number} at offset {self.offset} has wire type {self.wire}, "
                f"expected {LEN} (length-delimited)"
            )
        return self.payload

    def varint(self) -> int:
        """The value of a field that must be a varint."""
        if self.wire != VARINT:
            raise ProtobufError(
                f"field {self.number} at offset {self.offset} has wire type {self.wire}, "
                f"expected {VARINT} (varint)"
            )
        return self.value


def read_varint(data: memoryview | bytes, pos: int, base: int = 0) -> tuple[int, int]:
    """Decode the varint at ``pos``; return ``(value, position after it)``.

    ``base`` is added to offsets in error messages (the buffer's absolute offset).

    Raises:
        ProtobufError: the buffer ends inside the varint, or it is longer than 10 bytes.
    """
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise ProtobufError(f"truncated varint at offset {base + pos}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ProtobufError(f"varint longer than {_MAX_VARINT_BYTES} bytes at offset {base + pos}")


def iter_fields(data: memoryview, base: int = 0) -> Iterator[Field]:
    """Yield the fields of the message held in ``data``, in file order.

    Parameters:
        data: exactly one message's bytes.
        base: the absolute offset of ``data[0]`` (for offsets in fields and errors).

    Raises:
        ProtobufError: as soon as a key, length or value does not fit (fields before the
            problem have been yielded).

    Example::

        >>> [(f.number, f.value) for f in iter_fields(memoryview(b"\\x08\\x07"))]
        [(1, 7)]
    """
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = read_varint(data, pos, base)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"field number 0 at offset {base + pos}")
        if wire == VARINT:
            value, nxt = read_varint(data, pos, base)
            yield Field(number, wire, base + pos, value, _EMPTY)
        elif wire == LEN:
            length, start = read_varint(data, pos, base)
            nxt = start + length
            if nxt > end:
                raise ProtobufError(
                    f"field {number} at offset {base + pos} declares {length} bytes, "
                    f"only {end - start} remain"
                )
            yield Field(number, wire, base + start, length, data[start:nxt])
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            nxt = pos + size
            if nxt > end:
                raise ProtobufError(f"truncated fixed-width field {number} at offset {base + pos}")
            value = int.from_bytes(data[pos:nxt], "little")
            yield Field(number, wire, base + pos, value, _EMPTY)
        else:
            raise ProtobufError(
                f"field {number} has invalid wire type {wire} at offset {base + pos}"
            )
        pos = nxt
