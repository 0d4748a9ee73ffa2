"""The fee and the exact split: sums exact to the satoshi, remainders by the stated rule."""

from __future__ import annotations

from fractions import Fraction

import pytest
from acct_strategies import PROPERTY, exact_share
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting.money import Fee, integer_weights, split_exact


def test_fee_rounds_down_so_the_odd_satoshi_goes_to_miners() -> None:
    # 2% of 312,500,001 sats = 6,250,000.02 -> 6,250,000 (floor)
    assert Fee.bps(200).of(312_500_001) == 6_250_000
    assert Fee.bps(200).net(312_500_001) == 306_250_001
    # an exact fraction: 1/3 of 10 sats is 3.33.. -> 3
    assert Fee(1, 3).of(10) == 3
    assert Fee(0).of(10**15) == 0


@pytest.mark.parametrize(("num", "den"), [(-1, 100), (101, 100), (1, 0)])
def test_a_fee_outside_zero_to_one_is_refused(num: int, den: int) -> None:
    with pytest.raises(ValueError, match="fee"):
        Fee(num, den)


def test_largest_remainder_then_ascending_key_by_hand() -> None:
    # 10 sats over three equal weights: 3 each exactly (remainder 1 each of 3), one satoshi
    # missing: all remainders tie, so the smallest key, "a", gets it.
    assert split_exact(10, {"c": 1, "b": 1, "a": 1}) == {"a": 4, "b": 3, "c": 3}
    # 100 sats over 1:2:4 (total 7): exact 14.28, 28.57, 57.14 -> floors 14, 28, 57 = 99;
    # remainders 100*1 mod 7 = 2, 200 mod 7 = 4, 400 mod 7 = 1 -> "y" (remainder 4) gets it.
    assert split_exact(100, {"x": 1, "y": 2, "z": 4}) == {"x": 14, "y": 29, "z": 57}


def test_zero_weights_are_left_out_and_zero_total_is_refused() -> None:
    assert split_exact(5, {"a": 0, "b": 2}) == {"b": 5}
    assert split_exact(0, {}) == {}
    with pytest.raises(ValueError, match="zero total weight"):
        split_exact(5, {"a": 0})
    with pytest.raises(ValueError, match="negative"):
        split_exact(5, {"a": -1, "b": 2})


def test_fraction_weights_are_put_over_one_denominator() -> None:
    assert integer_weights({"a": Fraction(1, 2), "b": Fraction(1, 3), "c": 1}) == {
        "a": 3,
        "b": 2,
        "c": 6,
    }


weight_maps = st.dictionaries(
    st.text(alphabet="abcdefgh", min_size=1, max_size=3),
    st.one_of(
        st.integers(0, 10**12),
        st.fractions(min_value=0, max_value=10**6, max_denominator=10**9),
        st.floats(min_value=0, max_value=1e9, allow_nan=False).map(Fraction),
    ),
    min_size=1,
    max_size=30,
).filter(lambda m: any(m.values()))


@PROPERTY
@given(amount=st.integers(0, 21 * 10**14), weights=weight_maps)
def test_split_sums_exactly_and_no_part_is_a_satoshi_off(
    amount: int, weights: dict[str, Fraction]
) -> None:
    parts = split_exact(amount, weights)
    assert sum(parts.values()) == amount
    exact = exact_share(amount, {k: Fraction(v) for k, v in weights.items()})
    assert parts.keys() == exact.keys()
    for key, part in parts.items():
        assert 0 <= part - exact[key] < 1 or 0 <= exact[key] - part < 1
        assert part >= exact[key].__floor__()


@PROPERTY
@given(amount=st.integers(0, 10**12), weights=weight_maps)
def test_split_does_not_depend_on_the_order_of_the_weights(
    amount: int, weights: dict[str, Fraction]
) -> None:
    reordered = dict(reversed(list(weights.items())))
    assert split_exact(amount, weights) == split_exact(amount, reordered)


def naive_split(amount: int, weights: dict[str, int]) -> dict[str, int]:
    """The rule in its plainest form: sort every (-remainder, key) pair."""
    total = sum(weights.values())
    parts = {k: amount * w // total for k, w in weights.items() if w}
    order = sorted((-(amount * w % total), k) for k, w in weights.items() if w)
    for _, k in order[: amount - sum(parts.values())]:
        parts[k] += 1
    return parts


many_keys = st.lists(
    st.one_of(st.just(7), st.integers(1, 50), st.integers(1, 2**200)), min_size=64, max_size=300
).map(lambda ws: {f"k{i:03d}": w for i, w in enumerate(ws)})


@PROPERTY
@given(amount=st.integers(0, 21 * 10**14), weights=many_keys)
def test_the_fast_ranking_of_many_keys_equals_the_plain_sort(
    amount: int, weights: dict[str, int]
) -> None:
    # >= 64 keys take the numpy path; equal weights (7) make ties at the cut common
    assert split_exact(amount, weights) == naive_split(amount, weights)
