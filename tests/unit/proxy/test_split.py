"""The proxy's extranonce arithmetic and submit-id mapping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.errors import StratumError
from hashfarm.proxy.split import IdMap, PrefixAllocator, Split, downstream_coinb1
from hashfarm.stratum.work import Job


def test_first_session_gives_machines_the_upstream_size_less_the_prefix() -> None:
    split = Split.first(bytes.fromhex("deadbeef"), 8, 2)
    assert split.downstream_size == 6
    assert split.pad == b""
    assert split.full_extranonce2(b"\x00\x07", bytes(range(6))) == b"\x00\x07" + bytes(range(6))


def test_a_prefix_as_large_as_the_space_is_refused() -> None:
    with pytest.raises(StratumError, match="leaves nothing"):
        Split.first(b"\x01", 2, 2)


def test_failover_keeps_the_machines_size_and_pads_a_larger_space() -> None:
    first = Split.first(b"\xaa" * 4, 8, 2)
    bigger = first.next_session(b"\xbb" * 4, 10)
    assert bigger.downstream_size == 6
    assert bigger.full_extranonce2(b"\x00\x01", b"\x11" * 6) == b"\x00\x01" + bytes(2) + b"\x11" * 6
    with pytest.raises(StratumError, match="smaller"):
        first.next_session(b"\xbb" * 4, 7)


def test_wrong_sizes_are_refused() -> None:
    split = Split.first(b"\x01" * 4, 8, 2)
    with pytest.raises(StratumError, match="extranonce2 must be 6"):
        split.full_extranonce2(b"\x00\x01", b"\x00" * 5)
    with pytest.raises(StratumError, match="prefix must be 2"):
        split.full_extranonce2(b"\x01", b"\x00" * 6)


@given(
    en1=st.binary(min_size=1, max_size=8),
    upstream_size=st.integers(2, 16),
    k=st.integers(1, 4),
    coinb1=st.binary(max_size=40),
    coinb2=st.binary(max_size=40),
    data=st.data(),
)
def test_the_machines_coinbase_is_the_upstreams(
    en1: bytes, upstream_size: int, k: int, coinb1: bytes, coinb2: bytes, data: st.DataObject
) -> None:
    """coinb1' + P + en2 + coinb2 (what the machine hashes) == coinb1 + E1 + full en2 + coinb2
    (what the upstream rebuilds from the forwarded share)."""
    if upstream_size - k < 1:
        return
    split = Split.first(en1, upstream_size, k)
    prefix = data.draw(st.binary(min_size=k, max_size=k))
    en2 = data.draw(st.binary(min_size=split.downstream_size, max_size=split.downstream_size))
    job = Job("1", bytes(32), coinb1, coinb2, (), 0x20000000, 0x207FFFFF, 0, True)
    down = Job(
        "1",
        bytes(32),
        downstream_coinb1(coinb1, split),
        coinb2,
        (),
        0x20000000,
        0x207FFFFF,
        0,
        True,
    )
    assert down.coinbase(prefix, en2) == job.coinbase(en1, split.full_extranonce2(prefix, en2))


def test_prefixes_are_unique_among_live_machines_and_reused_after_release() -> None:
    alloc = PrefixAllocator(1)
    got = [alloc.claim() for _ in range(256)]
    assert len(set(got)) == 256
    with pytest.raises(StratumError, match="all 256"):
        alloc.claim()
    alloc.release(got[42])
    assert alloc.claim() == got[42]


@given(st.lists(st.booleans(), max_size=200))
def test_prefixes_never_collide_under_claims_and_releases(ops: list[bool]) -> None:
    alloc = PrefixAllocator(1)
    live: list[bytes] = []
    for claim in ops:
        if claim or not live:
            p = alloc.claim()
            assert p not in live
            live.append(p)
        else:
            alloc.release(live.pop(0))


def test_id_map_answers_each_forwarded_submit_once_with_the_machines_id() -> None:
    ids = IdMap(1000)
    a, b = object(), object()
    u1 = ids.add(a, 7, "share-a")
    u2 = ids.add(b, 7, "share-b")  # the same downstream id from two machines
    u3 = ids.add(a, "x", "share-c")
    assert len({u1, u2, u3}) == 3
    assert len(ids) == 3
    assert ids.pop(u2) == (b, 7, "share-b")
    assert ids.pop(u2) is None  # answered once
    assert ids.pop(str(u1)) is None  # not an id we sent
    assert ids.pop(99) is None
    assert sorted(map(str, ids.drain())) == sorted(
        map(str, [(a, 7, "share-a"), (a, "x", "share-c")])
    )
    assert len(ids) == 0
