"""Compact-size integers and the bounds-checked reader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.chain import ByteReader, encode_compact_size
from hashfarm.errors import DecodeError

VECTORS = [
    (0, "00"),
    (0xFC, "fc"),
    (0xFD, "fdfd00"),
    (0xFFFF, "fdffff"),
    (0x10000, "fe00000100"),
    (0xFFFFFFFF, "feffffffff"),
    (0x100000000, "ff0000000001000000"),
    (2**64 - 1, "ffffffffffffffffff"),
]


@pytest.mark.parametrize(("n", "hex_"), VECTORS)
def test_compact_size_vectors(n: int, hex_: str) -> None:
    assert encode_compact_size(n).hex() == hex_
    reader = ByteReader(bytes.fromhex(hex_))
    assert reader.read_compact_size(limit=2**64) == n
    assert reader.remaining() == 0


@pytest.mark.parametrize("hex_", ["fdfc00", "feffff0000", "fe00ff0000", "ffffffffff00000000"])
def test_non_canonical_compact_size_is_rejected(hex_: str) -> None:
    with pytest.raises(DecodeError, match="non-canonical"):
        ByteReader(bytes.fromhex(hex_)).read_compact_size(limit=2**64)


def test_compact_size_limit_as_core_max_size() -> None:
    with pytest.raises(DecodeError, match="exceeds the limit"):
        ByteReader(encode_compact_size(0x02000001)).read_compact_size()
    assert ByteReader(encode_compact_size(0x02000000)).read_compact_size() == 0x02000000


def test_negative_compact_size_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_compact_size(-1)


@pytest.mark.parametrize("hex_", ["", "fd", "fd01", "fe010000", "ff01000000000000"])
def test_truncated_reads_raise(hex_: str) -> None:
    with pytest.raises(DecodeError, match="truncated"):
        ByteReader(bytes.fromhex(hex_)).read_compact_size()


def test_reader_fields_and_bounds() -> None:
    data = bytes.fromhex("fffffffffeffffff010000000000008003616263")
    r = ByteReader(memoryview(data))
    assert r.read_u32() == 0xFFFFFFFF
    assert r.read_i32() == -2
    assert r.read_u64() == 0x8000000000000001
    assert r.read_var_bytes() == b"abc"
    r.expect_end("test record")
    with pytest.raises(DecodeError, match="need 1 bytes at offset 20"):
        r.read(1)
    with pytest.raises(DecodeError, match="2 trailing bytes after the thing"):
        ByteReader(b"\x00\x00").expect_end("thing")


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_compact_size_roundtrip(n: int) -> None:
    encoded = encode_compact_size(n)
    assert len(encoded) == (1 if n < 0xFD else 3 if n <= 0xFFFF else 5 if n < 2**32 else 9)
    reader = ByteReader(encoded)
    assert reader.read_compact_size(limit=2**64) == n
    reader.expect_end("compact size")
