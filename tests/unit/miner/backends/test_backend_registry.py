"""The backend interface: names, argument checks, range splitting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.errors import ConfigError
from hashfarm.miner.backends import Backend, available_backends, get_backend
from hashfarm.miner.backends.base import NONCE_SPACE, check_scan_args, split_range

HEADER76 = bytes(range(76))


def test_reference_and_numba_are_available() -> None:
    names = available_backends()
    assert names[:2] == ["hashlib", "numba"]


@pytest.mark.parametrize("name", ["hashlib", "numba"])
def test_backends_satisfy_the_protocol(name: str) -> None:
    backend = get_backend(name)
    assert isinstance(backend, Backend)
    assert backend.name == name


def test_unknown_backend_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown hashing backend 'sha3' \(known: hashlib"):
        get_backend("sha3")


def test_zero_threads_is_refused() -> None:
    with pytest.raises(ConfigError, match="threads: must be at least 1, got 0"):
        get_backend("hashlib", threads=0)


@pytest.mark.parametrize(
    ("header", "start", "count", "target", "message"),
    [
        (HEADER76[:75], 0, 1, 1, "header76 must be 76 bytes, got 75"),
        (HEADER76, -1, 1, 1, "nonce_start -1 is outside"),
        (HEADER76, NONCE_SPACE, 0, 1, "outside the 32-bit nonce space"),
        (HEADER76, NONCE_SPACE - 1, 2, 1, "count 2 from nonce 4294967295 leaves"),
        (HEADER76, 0, -5, 1, "count -5"),
        (HEADER76, 0, 1, -1, "is not a 256-bit unsigned number"),
        (HEADER76, 0, 1, 1 << 256, "is not a 256-bit unsigned number"),
    ],
)
def test_bad_scan_arguments_are_refused(
    header: bytes, start: int, count: int, target: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_scan_args(header, start, count, target)
    for name in ("hashlib", "numba"):
        with pytest.raises(ValueError, match=message):
            get_backend(name).scan(header, start, count, target)


def test_the_last_nonce_can_be_scanned() -> None:
    backend = get_backend("hashlib")
    assert backend.scan(HEADER76, NONCE_SPACE - 1, 1, (1 << 256) - 1) == [NONCE_SPACE - 1]
    assert backend.scan(HEADER76, 5, 0, (1 << 256) - 1) == []


@given(st.integers(0, 2**32 - 1), st.integers(0, 10_000), st.integers(1, 64))
def test_split_range_covers_the_range_in_order(start: int, count: int, parts: int) -> None:
    pieces = list(split_range(start, count, parts))
    assert len(pieces) <= parts
    assert all(size > 0 for _, size in pieces)
    flat = [n for first, size in pieces for n in range(first, first + size)]
    assert flat == list(range(start, start + count))
    sizes = [size for _, size in pieces]
    assert not sizes or max(sizes) - min(sizes) <= 1
