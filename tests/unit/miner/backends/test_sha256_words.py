"""The pure-Python SHA-256 words that feed the kernels, checked against hashlib."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.miner.backends.sha256_words import (
    IV,
    bswap32,
    compress,
    sha256_padded_words,
    target_top_word,
    work_words,
)


def _digest(message: bytes) -> bytes:
    state = IV
    for block in sha256_padded_words(message):
        state = compress(state, block)
    return b"".join(word.to_bytes(4, "big") for word in state)


@given(st.binary(max_size=300))
def test_compress_spells_hashlib_sha256(message: bytes) -> None:
    assert _digest(message) == hashlib.sha256(message).digest()


@pytest.mark.parametrize("size", [0, 55, 56, 63, 64, 119, 120])
def test_padding_boundaries(size: int) -> None:
    message = bytes(range(size))
    assert _digest(message) == hashlib.sha256(message).digest()


@given(st.binary(min_size=76, max_size=76), st.integers(0, 2**32 - 1))
def test_work_words_reproduce_the_header_hash(header76: bytes, nonce: int) -> None:
    words = work_words(header76)
    chunk2 = (*words.tail, bswap32(nonce), 0x80000000, *([0] * 10), 640)
    first = compress(words.midstate, chunk2)
    expected = hashlib.sha256(header76 + nonce.to_bytes(4, "little")).digest()
    assert b"".join(w.to_bytes(4, "big") for w in first) == expected


def test_work_words_rejects_a_wrong_length() -> None:
    with pytest.raises(ValueError, match="76 bytes, got 80"):
        work_words(bytes(80))


def test_target_top_word_is_the_top_of_the_little_endian_hash() -> None:
    digest = bytes(range(32))  # as a little-endian number its top bytes are 31, 30, 29, 28
    number = int.from_bytes(digest, "little")
    assert target_top_word(number) == 0x1F1E1D1C
    assert bswap32(int.from_bytes(digest[28:], "big")) == 0x1F1E1D1C
