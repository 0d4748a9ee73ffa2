"""The fast backends agree with the hashlib reference on random headers and targets."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashfarm.miner.backends import Backend, get_backend
from hashfarm.miner.backends.base import is_winner

REFERENCE = get_backend("hashlib")
FAST = ["numba"]

headers = st.binary(min_size=76, max_size=76)
# Easy targets, so that hits occur: the top bits pick a hit rate from about 1/2 to 1/4096.
easy_targets = st.builds(
    lambda shift, low: ((1 << 256) - 1 >> shift) ^ low, st.integers(1, 12), st.integers(0, 2**200)
)


@pytest.fixture(scope="module", params=FAST)
def fast(request: pytest.FixtureRequest) -> Iterator[Backend]:
    backend = get_backend(request.param)
    yield backend
    backend.close()


def _hash_number(header76: bytes, nonce: int) -> int:
    header = header76 + nonce.to_bytes(4, "little")
    return int.from_bytes(hashlib.sha256(hashlib.sha256(header).digest()).digest(), "little")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(headers, st.integers(0, 2**32 - 3000), st.integers(0, 2500), easy_targets)
def test_fast_backend_agrees_with_hashlib(
    fast: Backend, header76: bytes, start: int, count: int, target: int
) -> None:
    expected = REFERENCE.scan(header76, start, count, target)
    assert fast.scan(header76, start, count, target) == expected
    assert all(is_winner(header76, n, target) for n in expected)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(headers, st.integers(0, 2**32 - 1))
def test_a_target_equal_to_the_hash_is_met_and_one_less_is_not(
    fast: Backend, header76: bytes, nonce: int
) -> None:
    # The top words tie here, so the kernel hands the decision to the full comparison.
    number = _hash_number(header76, nonce)
    assert fast.scan(header76, nonce, 1, number) == [nonce]
    assert fast.scan(header76, nonce, 1, number - 1) == []


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(headers, st.integers(0, 2**32 - 1))
def test_the_top_of_the_nonce_space_and_extreme_targets(
    fast: Backend, header76: bytes, last: int
) -> None:
    end = 2**32
    count = min(50, end - last)
    assert fast.scan(header76, end - count, count, (1 << 256) - 1) == list(range(end - count, end))
    assert fast.scan(header76, 0, 100, 0) == []


def test_more_winners_than_the_kernel_buffer_holds() -> None:
    # With every hash a winner, the numba kernel returns to Python many times per scan.
    backend = get_backend("numba")
    header76 = bytes(76)
    count = 200_000
    assert backend.scan(header76, 7, count, (1 << 256) - 1) == list(range(7, 7 + count))


@pytest.mark.parametrize("name", ["hashlib", "numba"])
def test_threads_split_the_range_and_keep_the_order(name: str) -> None:
    header76 = bytes(range(76))
    target = ((1 << 256) - 1) >> 3  # about one nonce in 8 wins
    backend = get_backend(name, threads=3)
    try:
        found = backend.scan(header76, 1_000, 4_001, target)
    finally:
        backend.close()
    assert found == REFERENCE.scan(header76, 1_000, 4_001, target)
    assert 300 < len(found) < 700
