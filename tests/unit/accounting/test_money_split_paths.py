"""`split_exact`'s fast paths (int64, float estimate settled exactly) against the plain rule.

For 64 keys or more, `split_exact` computes the parts with numpy: in int64 when every
`amount * w` fits, else from float64 estimates with the keys near an integer or near the
remainder cut settled with exact integers. These tests compare every path, key by key and in
the same key order, with the rule written plainly in `Fraction`s (floor, then the largest
remainders, ties by ascending key), on inputs made to sit on those edges: equal weights (ties
at the cut), huge weights that differ by a unit (estimates that agree to 60 digits), amounts
on both sides of each path's bound, Fraction weights over one and over many denominators.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from acct_strategies import PROPERTY
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting.money import split_exact


def plain_rule(amount: int, weights: dict[str, Fraction | int]) -> dict[str, int]:
    """floor(amount * w / total) each, then one satoshi to each of the largest remainders."""
    exact = {k: Fraction(w) for k, w in weights.items() if w}
    total = sum(exact.values(), Fraction(0))
    share = {k: amount * w / total for k, w in exact.items()}
    parts = {k: math.floor(x) for k, x in share.items()}
    ranked = sorted(exact, key=lambda k: (-(share[k] - parts[k]), k))
    for key in ranked[: amount - sum(parts.values())]:
        parts[key] += 1
    return parts


def same(amount: int, weights: dict[str, Fraction | int]) -> None:
    got = split_exact(amount, weights)
    want = plain_rule(amount, weights)
    assert list(got.items()) == list(want.items())  # same parts, same key order


amounts = st.one_of(
    st.integers(0, 10**9),
    st.integers(0, 21 * 10**14),
    st.integers(2**45 - 3, 2**45 + 3),  # the float path's bound
    st.integers(0, 2**62),
)


@st.composite
def near_ties(draw: st.DrawFn) -> dict[str, Fraction | int]:
    """Huge weights a few units apart: float estimates of their parts all agree."""
    n = draw(st.integers(64, 200))
    base = draw(st.integers(2**60, 2**400))
    steps = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    nudges = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    return {f"k{i:03d}": base * s + e for i, (s, e) in enumerate(zip(steps, nudges, strict=True))}


small_ints = st.lists(
    st.one_of(st.just(7), st.integers(0, 50), st.integers(1, 2**30)), min_size=64, max_size=300
).map(lambda ws: {f"k{i:03d}": w for i, w in enumerate(ws)})

big_ints = st.lists(
    st.one_of(st.just(3**90), st.integers(0, 2**200), st.integers(2**1100, 2**1200)),
    min_size=64,
    max_size=300,
).map(lambda ws: {f"k{i:03d}": w for i, w in enumerate(ws)})


@st.composite
def fraction_weights(draw: st.DrawFn) -> dict[str, Fraction | int]:
    """A window's weights: over one denominator, over several, or mixed with ints."""
    n = draw(st.integers(64, 250))
    denominators = draw(
        st.lists(st.integers(1, 2**90), min_size=1, max_size=draw(st.sampled_from([1, 3, 50])))
    )
    out: dict[str, Fraction | int] = {}
    for i in range(n):
        num = draw(st.one_of(st.just(5), st.integers(0, 2**100)))
        den = draw(st.sampled_from(denominators))
        out[f"a{(i * 7919) % n:03d}"] = Fraction(num, den)
    if draw(st.booleans()):
        out["int-weight"] = draw(st.integers(0, 2**40))
    return out


@PROPERTY
@given(amount=amounts, weights=small_ints)
def test_int64_path_equals_the_plain_rule(amount: int, weights: dict[str, Fraction | int]) -> None:
    if any(weights.values()):
        same(amount, weights)


@PROPERTY
@given(amount=amounts, weights=st.one_of(big_ints, near_ties()))
def test_float_estimate_path_equals_the_plain_rule(
    amount: int, weights: dict[str, Fraction | int]
) -> None:
    if any(weights.values()):
        same(amount, weights)


@PROPERTY
@given(amount=amounts, weights=fraction_weights())
def test_fraction_weights_equal_the_plain_rule(
    amount: int, weights: dict[str, Fraction | int]
) -> None:
    if any(weights.values()):
        same(amount, weights)


def test_every_key_tied_at_the_cut() -> None:
    # 10,000 equal weights: every remainder ties; the missing sats go to the smallest keys
    weights: dict[str, Fraction | int] = {f"m{i:05d}": 1 for i in range(10_000)}
    parts = split_exact(123_456_789, weights)
    assert parts == plain_rule(123_456_789, weights)
    assert parts["m00000"] == 12_346
    assert parts["m09999"] == 12_345
    huge: dict[str, Fraction | int] = {k: 2**300 for k in weights}  # the float path, tied
    assert split_exact(123_456_789, huge) == parts


def test_a_float_weight_is_refused() -> None:
    with pytest.raises(TypeError, match="integers or Fractions"):
        split_exact(10, {"a": 1.5, "b": Fraction(1, 2)})  # type: ignore[dict-item]
