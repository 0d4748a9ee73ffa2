"""`windowread.read_window` (a window read as aggregate rows) against the reference.

Shares are written into a real SQLite database with the pool's own migrations (rejected
shares in between, id gaps, accounts of every shape), then the window read by chunks of
aggregates must equal `window.pplns_window` over the same accepted shares, and the previous
row-by-row read (`_row_window`), field by field: weights, total, oldest and newest share,
edge fraction. Chunks of 1 to 7 ids put the window's edge at every position of a chunk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest
from acct_strategies import PROPERTY
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import windowread
from hashfarm.accounting.inputs import Share
from hashfarm.accounting.store import SqlStore
from hashfarm.accounting.window import Window, pplns_window
from hashfarm.pool.storage.sqlite import migrate_sqlite as migrate_pool

Row = tuple[int, str, Any, bool]  # id, account, difficulty (any SQLite value), accepted
NAMES = ("alice", "bob", "m7.rig", "", "a,b", "naïve", "x" * 70)

# vardiff's arbitrary floats over a wide range, round values, and regtest's tiny ones
difficulties = st.one_of(
    st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 1.0, 3.0, 1024.0, 2.0**-30, 4.656542373906925e-10, 1.5e15]),
)


def pool_database(rows: Sequence[Row]) -> SqlStore:
    """An in-memory SQLite database with the pool's schema and these shares."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate_pool(conn)
    conn.executemany(
        "INSERT INTO shares (id, time, worker, account, job_id, height, difficulty, "
        "share_difficulty, accepted, reject_reason, extranonce1, block_hash) "
        "VALUES (?, 1.0, 'w', ?, 'j', 1, ?, 1.0, ?, NULL, '00', NULL)",
        rows,
    )
    return SqlStore(conn, "sqlite", ":memory:")


@st.composite
def ledgers(draw: st.DrawFn) -> list[Row]:
    """Shares in id order: (id, account, difficulty, accepted), ids with gaps."""
    n = draw(st.integers(0, 40))
    rows: list[Row] = []
    share_id = draw(st.integers(0, 3))
    for _ in range(n):
        share_id += draw(st.sampled_from([1, 1, 1, 2, 9]))
        rows.append(
            (
                share_id,
                draw(st.sampled_from(NAMES[:3]) | st.sampled_from(NAMES)),
                draw(difficulties),
                draw(st.booleans() | st.just(True)),
            )
        )
    return rows


def reference(rows: Sequence[Row], after: int, until: int, size: Fraction) -> Window:
    shares = [Share(i, a, float(d), 0.0, 0) for i, a, d, ok in rows if ok and after < i <= until]
    return pplns_window(shares, size)


@PROPERTY
@given(
    rows=ledgers(),
    cut=st.fractions(min_value=0, max_value=2, max_denominator=50),
    chunk=st.integers(1, 7),
    after=st.integers(-1, 30),
    until_back=st.integers(0, 20),
)
def test_aggregated_read_equals_the_reference(
    rows: list[Row],
    cut: Fraction,
    chunk: int,
    after: int,
    until_back: int,
) -> None:
    until = (rows[-1][0] if rows else 10) - until_back
    inside = [Fraction(d) for i, _, d, ok in rows if ok and after < i <= until]
    # a window cut inside the work, exactly at a share's edge, or larger than all of it
    size = max(cut * sum(inside, Fraction(0)), Fraction(1, 10**6))
    if inside and cut == 1:
        size = sum(inside, Fraction(0)) - inside[0]  # the edge exactly between two shares
        size = size or inside[0]
    sql = pool_database(rows)
    want = reference(rows, after, until, size)
    assert windowread.read_window(sql, after, until, size, chunk) == want
    assert windowread._row_window(sql, after, until, size, chunk) == want


def test_a_newline_in_an_account_takes_the_row_path_with_the_same_result() -> None:
    rows = [(i, ["a\nb", "c"][i % 2], 1.0 + i / 8, True) for i in range(1, 30)]
    size = Fraction(17)
    sql = pool_database(rows)
    assert windowread.read_window(sql, 0, 29, size, 4) == reference(rows, 0, 29, size)


def test_a_long_stretch_without_shares_is_jumped_not_walked() -> None:
    rows = [(1, "old", 2.0, True), (10**12, "new", 1.0, True), (10**12 + 1, "new", 1.0, False)]
    sql = pool_database(rows)
    got = windowread.read_window(sql, -1, 10**12 + 5, Fraction(2), 3)
    assert got == reference(rows, -1, 10**12 + 5, Fraction(2))
    assert got.oldest_share_id == 1
    assert got.weights == {"new": 1, "old": 1}


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), "abc", b"\x00"])
def test_an_impossible_difficulty_is_refused_as_before(bad: object) -> None:
    rows = [(1, "a", 1.0, True), (2, "b", bad, True), (3, "c", 1.0, True)]
    sql = pool_database(rows)
    with pytest.raises((ValueError, TypeError)) as before:  # the previous (row) read
        windowread._row_window(sql, 0, 3, Fraction(10), 2)
    with pytest.raises(before.type):
        windowread.read_window(sql, 0, 3, Fraction(10), 2)


def test_difficulties_too_far_apart_for_one_scale_take_the_row_path() -> None:
    rows = [(1, "a", 2.0**-40, True), (2, "b", 2.0**30, True), (3, "a", 3.0, True)]
    sql = pool_database(rows)
    size = Fraction(2**30) + 2
    assert windowread.read_window(sql, 0, 3, size, 5) == reference(rows, 0, 3, size)
