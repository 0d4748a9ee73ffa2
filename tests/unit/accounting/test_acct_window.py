"""PPLNS/TIDES windows and PROP rounds: the edge rule by hand, numpy against the reference."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from acct_strategies import ACCOUNTS, PROPERTY, share_streams
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import Share
from hashfarm.accounting.fastwindow import fast_pplns_window
from hashfarm.accounting.window import pplns_window, prop_round, window_size


def _shares(*spec: tuple[str, float]) -> list[Share]:
    return [Share(i, a, d, float(i), 1) for i, (a, d) in enumerate(spec)]


def test_the_share_crossing_the_edge_counts_only_inside_the_window() -> None:
    # oldest first: a 4, b 4, a 2, b 1; window 6 from the newest back:
    # b 1 (total 1), a 2 (3), b 4 would make 7 > 6: counted for 6 - 3 = 3 of its 4.
    shares = _shares(("a", 4), ("b", 4), ("a", 2), ("b", 1))
    w = pplns_window(shares, Fraction(6))
    assert w.weights == {"b": Fraction(4), "a": Fraction(2)}
    assert w.edge_fraction == Fraction(3, 4)
    assert (w.oldest_share_id, w.newest_share_id) == (1, 3)
    assert w.full
    assert w.total == 6
    assert w.explain("a") == Fraction(1, 3)


def test_a_share_ending_exactly_on_the_edge_counts_whole() -> None:
    w = pplns_window(_shares(("a", 4), ("b", 2), ("a", 1)), Fraction(3))
    assert w.weights == {"a": Fraction(1), "b": Fraction(2)}
    assert w.edge_fraction == 1
    assert w.oldest_share_id == 1


def test_a_window_not_full_pays_the_work_present() -> None:
    w = pplns_window(_shares(("a", 1), ("b", 2)), Fraction(100))
    assert w.weights == {"a": 1, "b": 2}
    assert not w.full
    assert w.total == 3


def test_tides_window_is_eight_network_difficulties_exactly() -> None:
    assert window_size(8, 0.1) == 8 * Fraction(0.1)  # the float's exact binary value
    assert window_size(Fraction(1, 2), 3.0) == Fraction(3, 2)


def test_prop_round_counts_every_share_whole() -> None:
    r = prop_round(_shares(("a", 0.5), ("b", 1.5), ("a", 1)))
    assert r.weights == {"a": Fraction(3, 2), "b": Fraction(3, 2)}
    assert r.size == r.total == 3


def _arrays(shares: list[Share]) -> tuple[np.ndarray, np.ndarray]:
    idx = {a: i for i, a in enumerate(ACCOUNTS)}
    acc = np.array([idx[s.account] for s in shares], dtype=np.int64)
    return acc, np.array([s.difficulty for s in shares], dtype=np.float64)


@PROPERTY
@given(shares=share_streams(max_size=60), scale=st.fractions(min_value=0, max_value=2))
def test_numpy_window_equals_the_reference_exactly(shares: list[Share], scale: Fraction) -> None:
    total = sum((Fraction(s.difficulty) for s in shares), Fraction(0))
    size = total * scale if scale > 0 else Fraction(shares[-1].difficulty) / 3
    ref = pplns_window(shares, size)
    fast = fast_pplns_window(*_arrays(shares), size)
    assert {ACCOUNTS[k]: v for k, v in fast.as_fractions().items()} == ref.weights
    assert fast.edge_fraction == ref.edge_fraction
    assert Fraction(fast.total, fast.denominator) == ref.total
    assert ref.total <= size


def test_numpy_window_with_difficulties_spanning_seventy_binary_orders() -> None:
    # 1e-12 and 1e9 in one window: the exact integers need ~140 bits (no float sum could)
    rng = np.random.default_rng(7)
    diffs = rng.choice([1e-12, 3e-7, 0.75, 1.0, 2.5e9], size=5000)
    shares = [Share(i, ACCOUNTS[i % 5], float(d), 0.0, 0) for i, d in enumerate(diffs)]
    size = sum((Fraction(s.difficulty) for s in shares), Fraction(0)) * Fraction(2, 3)
    fast = fast_pplns_window(*_arrays(shares), size)
    ref = pplns_window(shares, size)
    assert {ACCOUNTS[k]: v for k, v in fast.as_fractions().items()} == ref.weights
    assert Fraction(fast.total, fast.denominator) == size


def test_numpy_window_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="one non-negative index"):
        fast_pplns_window(np.array([0, -1]), np.array([1.0, 1.0]), Fraction(1))
    with pytest.raises(ValueError, match="one non-negative index"):
        fast_pplns_window(np.array([0]), np.array([1.0, 1.0]), Fraction(1))
    with pytest.raises(ValueError, match="positive and finite"):
        fast_pplns_window(np.array([0, 1]), np.array([1.0, float("nan")]), Fraction(1))
