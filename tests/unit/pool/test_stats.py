"""Pool statistics on a simulated clock: hashrate windows, rejects, best share, blocks."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.pool.records import REJECT_DUPLICATE, REJECT_STALE, BlockRecord, ShareRecord
from hashfarm.pool.stats import SLOTS, WINDOWS, PoolStats, RateWindow
from hashfarm.units import hashrate_from_shares

T0 = 1_750_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def fresh() -> tuple[Clock, PoolStats]:
    """A clock at T0 and stats that read it."""
    clock = Clock()
    return clock, PoolStats(clock)


def rec(
    t: float,
    worker: str = "alice.rig1",
    *,
    diff: float = 1.0,
    hit: float = 2.0,
    reason: str | None = None,
) -> ShareRecord:
    return ShareRecord(
        worker,
        worker.split(".")[0],
        "1",
        500,
        diff,
        hit,
        reason is None,
        reason,
        t,
        "00000001",
        None,
    )


def blk(height: int, worker: str = "alice.rig1", *, ok: bool = True) -> BlockRecord:
    return BlockRecord(
        height,
        f"{height:064x}",
        5_000_000_000,
        worker,
        worker.split(".")[0],
        T0 + height,
        ok,
        None if ok else "high-hash",
    )


def mine(
    stats: PoolStats,
    clock: Clock,
    seconds: int,
    every: float,
    diff: float,
    worker: str = "alice.rig1",
) -> None:
    """One share of difficulty `diff` every `every` seconds, for `seconds`."""
    for i in range(int(seconds / every)):
        clock.now = T0 + i * every
        stats.on_share(rec(clock.now, worker, diff=diff))


def test_a_steady_miner_is_estimated_at_its_hashrate_in_every_window() -> None:
    clock, stats = fresh()
    mine(stats, clock, seconds=7200, every=2.0, diff=0.5)  # 0.25 diff-1 per second
    rates = stats.worker("alice.rig1").hashrate  # type: ignore[union-attr]
    expected = 0.25 * 2**32
    for window in ("1m", "5m", "1h"):
        assert rates[window] == pytest.approx(expected, rel=0.04), window
    # 24h window with 2 h of history: divided by the history, not by 24 h.
    assert rates["24h"] == pytest.approx(expected, rel=0.04)
    assert stats.pool().hashrate == rates


def test_a_silent_miner_drops_out_of_the_short_window_first() -> None:
    clock, stats = fresh()
    mine(stats, clock, seconds=600, every=1.0, diff=1.0)
    clock.now += 120
    rates = stats.pool().hashrate
    assert rates["1m"] == 0.0
    assert rates["5m"] == pytest.approx(180 * 2**32 / 300, rel=0.05)  # 3 of 5 minutes had shares


def test_rejects_are_counted_by_reason_and_earn_no_hashrate_or_best_share() -> None:
    clock, stats = fresh()
    stats.on_share(rec(T0, hit=3.0))
    stats.on_share(rec(T0, hit=1e9, reason=REJECT_STALE))
    stats.on_share(rec(T0, reason=REJECT_DUPLICATE))
    stats.on_share(rec(T0, reason=REJECT_DUPLICATE))
    clock.now = T0 + 30
    pool = stats.pool()
    assert (pool.shares_accepted, pool.shares_rejected) == (1, {"stale": 1, "duplicate": 2})
    assert pool.best_share == 3.0
    assert pool.hashrate["1m"] == pytest.approx(2**32 / 30)  # 30 s of history


def test_workers_are_kept_apart_and_listed_busiest_first() -> None:
    clock, stats = fresh()
    mine(stats, clock, seconds=300, every=1.0, diff=1.0, worker="bob.slow")
    mine(stats, clock, seconds=300, every=1.0, diff=4.0, worker="alice.fast")
    names = [w.name for w in stats.workers()]
    assert names == ["alice.fast", "bob.slow"]
    fast, slow = stats.workers()
    assert fast.hashrate["5m"] == pytest.approx(4 * slow.hashrate["5m"], rel=0.01)
    assert stats.pool().hashrate["5m"] == pytest.approx(5 * slow.hashrate["5m"], rel=0.01)
    assert (fast.account, stats.pool().workers) == ("alice", 2)
    assert stats.worker("carol.none") is None


def test_blocks_credit_the_finder_only_when_the_node_accepted_them() -> None:
    _, stats = fresh()
    stats.on_share(rec(T0))
    stats.on_block(blk(1))
    stats.on_block(blk(2, ok=False))
    stats.on_block(blk(3, "ghost.rig"))  # a finder with no share yet seen still counts for the pool
    assert [b.height for b in stats.blocks()] == [3, 2, 1]
    pool = stats.pool()
    assert (pool.blocks_found, pool.blocks_rejected) == (2, 1)
    assert stats.worker("alice.rig1").blocks_found == 1  # type: ignore[union-attr]


def test_idle_workers_can_be_forgotten() -> None:
    clock, stats = fresh()
    stats.on_share(rec(T0, "old.rig"))
    clock.now = T0 + 90_000
    stats.on_share(rec(clock.now, "new.rig"))
    assert stats.forget_idle() == 1
    assert [w.name for w in stats.workers()] == ["new.rig"]


@given(
    st.lists(st.tuples(st.floats(0, 500), st.floats(0, 10)), max_size=60),
    st.floats(0, 600),
)
def test_a_window_sums_exactly_the_slots_within_its_span(
    adds: list[tuple[float, float]], now_offset: float
) -> None:
    window = RateWindow(60.0)
    for t, amount in sorted(adds):
        window.add(T0 + t, amount)
    now = T0 + max([now_offset, *(t for t, _ in adds)])
    newest = int(now // window.width)
    # Brute force: every add whose slot lies in the last SLOTS slots.
    expected = sum(a for t, a in adds if newest - SLOTS < int((T0 + t) // window.width) <= newest)
    assert window.total(now) == pytest.approx(expected)


@given(
    st.lists(
        st.tuples(
            st.floats(0, 3 * 86_400),  # when, over three days (every window wraps)
            st.sampled_from(["alice.rig1", "alice.rig2", "bob.rig1"]),
            st.floats(1e-6, 1e6),  # difficulty
        ),
        max_size=80,
    ),
    st.floats(0, 600),
)
def test_tallies_summed_per_second_read_as_if_each_share_went_into_every_window(
    shares: list[tuple[float, str, float]], later: float
) -> None:
    """A tally adds a second's shares to its four windows once, when the second ends or the
    windows are read; every reader (a worker, the pool, the ranking) sees what four window
    updates per share give, whenever it reads."""
    clock, stats = fresh()
    keys = ("*", "alice.rig1", "alice.rig2", "bob.rig1")  # "*": the pool as a whole
    reference = {key: [RateWindow(span) for _, span in WINDOWS] for key in keys}
    first: dict[str, float] = {}
    for n, (t, worker, diff) in enumerate(sorted(shares)):
        clock.now = T0 + t
        stats.on_share(rec(clock.now, worker, diff=diff))
        for key in ("*", worker):
            first.setdefault(key, clock.now)
            for window in reference[key]:
                window.add(clock.now, diff)
        if n % 7 == 3:  # a read in the middle of a second settles it early: still the same
            _assert_same(stats, reference, first, clock.now)
    clock.now += later
    _assert_same(stats, reference, first, clock.now)


def _assert_same(
    stats: PoolStats, reference: dict[str, list[RateWindow]], first: dict[str, float], now: float
) -> None:
    def expected(key: str) -> dict[str, float]:
        seen = now - first[key]
        return {
            name: hashrate_from_shares(w.total(now), max(min(span, seen), w.width))
            for (name, span), w in zip(WINDOWS, reference[key], strict=True)
        }

    if "*" in first:
        assert stats.pool().hashrate == pytest.approx(expected("*"), rel=1e-9)
    workers = stats.busiest(3)  # ranked on the windows' sums read directly (`_rates`)
    assert sorted(w.name for w in workers) == sorted(first.keys() - {"*"})
    for w in workers:
        assert w.hashrate == pytest.approx(expected(w.name), rel=1e-9)
    rates = [expected(w.name)["5m"] for w in workers]
    assert all(a >= b * (1 - 1e-9) for a, b in pairwise(rates))
