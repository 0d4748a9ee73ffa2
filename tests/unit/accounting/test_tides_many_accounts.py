"""`plan_coinbase` over windows of hundreds of accounts (numpy paths) against the plain rules.

The reference plan is the module's rules written plainly: the exact split in `Fraction`s
(floor, then largest remainders, ties by ascending account), every account due at least the
dust ranked by sorting (-amount, account), the first `max_outputs - 1` paid, lowest-ranked
payees moved back to held while the pool's output would be negative. The plan must be the
same field by field for integer and Fraction windows, with and without held balances.
"""

from __future__ import annotations

import math
from fractions import Fraction

from acct_strategies import PROPERTY
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.accounting import Fee, Tides, plan_coinbase
from hashfarm.accounting.tides import CoinbasePlan


def plain_split(amount: int, weights: dict[str, Fraction | int]) -> dict[str, int]:
    exact = {k: Fraction(w) for k, w in weights.items() if w}
    total = sum(exact.values(), Fraction(0))
    share = {k: amount * w / total for k, w in exact.items()}
    parts = {k: math.floor(x) for k, x in share.items()}
    for key in sorted(exact, key=lambda k: (-(share[k] - parts[k]), k))[
        : amount - sum(parts.values())
    ]:
        parts[key] += 1
    return parts


def plain_plan(
    value: int, weights: dict[str, Fraction | int], scheme: Tides, held: dict[str, int]
) -> CoinbasePlan:
    if any(weights.values()):
        fee = scheme.fee.of(value)
        earnings = plain_split(value - fee, weights)
    else:
        fee, earnings = value, {}
    due = dict(earnings)
    for account, sats in held.items():
        due[account] = due.get(account, 0) + sats
    ranked = sorted((-sats, a) for a, sats in due.items() if sats >= scheme.dust_sats)
    payees = [a for _, a in ranked][: max(scheme.max_outputs - 1, 0)]
    pool = value - sum(due[a] for a in payees)
    while pool < 0:
        pool += due[payees.pop()]
    return CoinbasePlan(
        value=value,
        fee=fee,
        earnings=earnings,
        outputs=tuple((a, due[a]) for a in payees),
        pool_sats=pool,
        held_used={a: held[a] for a in payees if held.get(a, 0) > 0},
        held_before=dict(held),
    )


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Fraction | int]:
    """64-400 accounts: random, equal (ties), huge integers, or Fractions of a window."""
    n = draw(st.integers(64, 400))
    kind = draw(st.sampled_from(["ints", "equal", "huge", "fractions"]))
    if kind == "equal":
        return {f"m{i:04d}": 3 for i in range(n)}
    if kind == "ints":
        values = draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n))
        return {f"m{(i * 7919) % n:04d}": v for i, v in enumerate(values)}
    if kind == "huge":
        base = draw(st.integers(2**64, 2**200))
        steps = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
        return {f"m{i:04d}": base * s + i % 3 for i, s in enumerate(steps)}
    den = draw(st.integers(1, 2**80))
    nums = draw(st.lists(st.integers(0, 2**90), min_size=n, max_size=n))
    return {f"m{i:04d}": Fraction(v, den << (i % 5)) for i, v in enumerate(nums)}


@PROPERTY
@given(
    value=st.sampled_from([0, 1, 312_500_000 + 23_456_789, 21 * 10**14]) | st.integers(0, 10**11),
    window=windows(),
    held_sats=st.lists(st.integers(0, 5 * 10**6), max_size=40),
    dust=st.sampled_from([1, 10_000, 1_048_576]),
    max_outputs=st.integers(1, 520),
    fee_bps=st.integers(0, 10_000),
)
def test_plan_equals_the_plain_rules(
    value: int,
    window: dict[str, Fraction | int],
    held_sats: list[int],
    dust: int,
    max_outputs: int,
    fee_bps: int,
) -> None:
    names = sorted(window)
    held = {names[(i * 31) % len(names)]: s for i, s in enumerate(held_sats)}
    held["someone-gone"] = 2 * dust  # held balance of an account no longer in the window
    scheme = Tides(Fee.bps(fee_bps), dust_sats=dust, max_outputs=max_outputs)
    assert plan_coinbase(value, window, scheme, held) == plain_plan(value, window, scheme, held)
