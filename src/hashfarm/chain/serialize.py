"""Wire serialization primitives: a bounds-checked reader over bytes and compact-size integers.

The reader walks one buffer by offset, so parsing a 1 MB block copies each field once and
never the rest of the buffer.
"""

from __future__ import annotations

import struct

from hashfarm.errors import DecodeError

__all__ = ["MAX_COMPACT_SIZE", "ByteReader", "encode_compact_size"]

# Bitcoin Core refuses compact sizes above this (MAX_SIZE in serialize.h) when reading.
MAX_COMPACT_SIZE = 0x02000000

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")


class ByteReader:
    """Reads little-endian fields from a bytes-like buffer; raises DecodeError past its end."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview, offset: int = 0) -> None:
        self._data = bytes(data)  # no copy when given bytes
        self._pos = offset

    @property
    def pos(self) -> int:
        """Offset of the next byte to read."""
        return self._pos

    def remaining(self) -> int:
        """Number of bytes not read yet."""
        return len(self._data) - self._pos

    def _truncated(self, n: int) -> DecodeError:
        left = len(self._data) - self._pos
        return DecodeError(
            f"truncated data: need {n} bytes at offset {self._pos}, only {left} left"
        )

    # The readers below inline the bounds check (slice length, struct.error, IndexError)
    # instead of calling a helper: parsing a 1 MB block makes ~50,000 of these calls.

    def read(self, n: int) -> bytes:
        """The next `n` bytes."""
        pos = self._pos
        chunk = self._data[pos : pos + n]
        if len(chunk) != n or n < 0:
            raise self._truncated(n)
        self._pos = pos + n
        return chunk

    def read_u8(self) -> int:
        """An unsigned byte."""
        try:
            value = self._data[self._pos]
        except IndexError:
            raise self._truncated(1) from None
        self._pos += 1
        return value

    def _unpack(self, fmt: struct.Struct) -> int:
        try:
            value: int = fmt.unpack_from(self._data, self._pos)[0]
        except struct.error:
            raise self._truncated(fmt.size) from None
        self._pos += fmt.size
        return value

    def read_u16(self) -> int:
        """A little-endian unsigned 16-bit integer."""
        return self._unpack(_U16)

    def read_u32(self) -> int:
        """A little-endian unsigned 32-bit integer."""
        return self._unpack(_U32)

    def read_i32(self) -> int:
        """A little-endian signed 32-bit integer (transaction and block versions)."""
        return self._unpack(_I32)

    def read_u64(self) -> int:
        """A little-endian unsigned 64-bit integer."""
        return self._unpack(_U64)

    def read_compact_size(self, limit: int = MAX_COMPACT_SIZE) -> int:
        """A compact-size integer; non-canonical encodings and values over `limit` raise."""
        first = self.read_u8()
        if first < 0xFD:
            return first
        if first == 0xFD:
            value, minimum = self.read_u16(), 0xFD
        elif first == 0xFE:
            value, minimum = self.read_u32(), 0x10000
        else:
            value, minimum = self.read_u64(), 0x100000000
        if value < minimum:
            raise DecodeError(f"non-canonical compact size {value} at offset {self._pos}")
        if value > limit:
            raise DecodeError(f"compact size {value} exceeds the limit {limit}")
        return value

    def read_var_bytes(self) -> bytes:
        """A compact-size length followed by that many bytes."""
        data, pos = self._data, self._pos
        if pos < len(data) and data[pos] < 0xFD:  # the common one-byte length, inlined
            end = pos + 1 + data[pos]
            if end > len(data):
                self._pos += 1
                raise self._truncated(data[pos])
            self._pos = end
            return data[pos + 1 : end]
        return self.read(self.read_compact_size())

    def expect_end(self, what: str) -> None:
        """Raise DecodeError if bytes are left over after a complete `what`."""
        if self._pos != len(self._data):
            raise DecodeError(f"{self.remaining()} trailing bytes after the {what}")


def encode_compact_size(n: int) -> bytes:
    """The compact-size encoding of `n` (0 <= n < 2**64), always canonical."""
    if n < 0xFD:
        if n < 0:
            raise ValueError(f"compact size cannot be negative: {n}")
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + _U16.pack(n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + _U32.pack(n)
    return b"\xff" + _U64.pack(n)
