"""The 80-byte header: the genesis block and real mainnet headers."""

from __future__ import annotations

import pytest

from hashfarm.chain import BlockHeader
from hashfarm.errors import DecodeError
from realdata import FIXTURE_BLOCKS

GENESIS = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b2"
    "7ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)


def test_genesis_header() -> None:
    h = BlockHeader.parse(GENESIS)
    assert (h.version, h.time, h.bits, h.nonce) == (1, 1231006505, 0x1D00FFFF, 2083236893)
    assert h.prev_hash == bytes(32)
    assert h.merkle_root[::-1].hex() == (
        "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
    )
    assert h.hash_hex() == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert h.serialize() == GENESIS
    assert h.meets_target()
    assert h.target() == 0xFFFF << 208
    assert not h.meets_target(int.from_bytes(h.hash(), "little") - 1)


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_real_headers_roundtrip(path) -> None:  # type: ignore[no-untyped-def]
    raw = path.read_bytes()[:80]
    h = BlockHeader.parse(raw)
    assert h.serialize() == raw
    assert h.meets_target()


def test_bad_header_length() -> None:
    with pytest.raises(DecodeError, match="80 bytes, got 79"):
        BlockHeader.parse(GENESIS[:79])


def test_negative_version_roundtrips() -> None:
    h = BlockHeader.parse(b"\xff\xff\xff\xff" + GENESIS[4:])
    assert h.version == -1
    assert h.serialize()[:4] == b"\xff\xff\xff\xff"
