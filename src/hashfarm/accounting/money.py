"""Exact money arithmetic: the pool fee and the split of an amount over weights.

Every amount is an integer number of satoshis; weights and rates are integers or
`fractions.Fraction`, never floats. Two rules decide every rounding in hashfarm's
accounting, and both are stated here once:

* **Fee**: `Fee.of(amount)` is `floor(amount * numerator / denominator)`: the pool rounds its
  own fee down, so a rounding satoshi always goes to the miners.
* **Split**: `split_exact(amount, weights)` gives each key `floor(amount * w / total)` and then
  hands the satoshis still missing (fewer than the number of keys) one each to the keys with
  the largest remainders `amount * w mod total`, ties broken by ascending key. This is the
  largest-remainder (Hamilton) method; the parts sum to `amount` exactly, no part differs
  from its exact share by one satoshi or more, and the result depends only on the inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import repeat
from operator import itemgetter, mul, truediv
from typing import TypeVar

import numpy as np

K = TypeVar("K", str, int)

BPS_DENOMINATOR = 10_000  # one basis point is 1/10,000


@dataclass(frozen=True, slots=True)
class Fee:
    """A pool fee as an exact fraction of an amount, in [0, 1]."""

    numerator: int
    denominator: int = BPS_DENOMINATOR

    def __post_init__(self) -> None:
        if self.denominator <= 0 or not 0 <= self.numerator <= self.denominator:
            raise ValueError(f"fee {self.numerator}/{self.denominator} is not within [0, 1]")

    @classmethod
    def bps(cls, basis_points: int) -> Fee:
        """A fee in basis points (200 = 2%)."""
        return cls(basis_points, BPS_DENOMINATOR)

    @property
    def rate(self) -> Fraction:
        """The fee as an exact fraction."""
        return Fraction(self.numerator, self.denominator)

    def of(self, amount: int) -> int:
        """The fee on `amount` satoshis, rounded down (the odd satoshi goes to miners)."""
        if amount < 0:
            raise ValueError(f"amount {amount} is negative")
        return amount * self.numerator // self.denominator

    def net(self, amount: int) -> int:
        """What is left of `amount` for the miners once the fee is taken."""
        return amount - self.of(amount)


NO_FEE = Fee(0)


def integer_weights(weights: Mapping[K, Fraction | int]) -> dict[K, int]:
    """The same proportions as integers: every weight times the common denominator."""
    common = 1
    for w in weights.values():
        if isinstance(w, Fraction):
            common = math.lcm(common, w.denominator)
    out: dict[K, int] = {}
    for key, w in weights.items():
        scaled = w * common
        if isinstance(scaled, Fraction):
            if scaled.denominator != 1:
                raise AssertionError("the common denominator did not clear a weight")
            scaled = scaled.numerator
        out[key] = scaled
    return out


def split_exact(amount: int, weights: Mapping[K, Fraction | int]) -> dict[K, int]:
    """Split `amount` satoshis over `weights` so the parts sum to `amount` exactly.

    Keys with weight 0 get nothing and are left out; a negative weight, a negative amount or
    an all-zero set of weights (with a non-zero amount) is a ValueError. See the module
    docstring for the remainder rule (largest remainder, ties by ascending key).
    """
    if amount < 0:
        raise ValueError(f"amount {amount} is negative")
    keys = list(weights)
    values = list(weights.values())
    if values and min(values) < 0:
        raise ValueError("a weight is negative")
    raw_total = sum(values)
    if isinstance(raw_total, int):
        total = raw_total
    else:  # some weights are fractions: restate them over one denominator
        ints = integer_weights(weights)
        values = [ints[k] for k in keys]
        total = sum(ints.values())
    if total == 0:
        if amount == 0:
            return {}
        raise ValueError(f"cannot split {amount} sats over zero total weight")
    if 0 in values:
        keys = [k for k, w in zip(keys, values, strict=True) if w]
        values = [w for w in values if w]
    # map() keeps these 10^4-element passes in C: this runs before a TIDES job's notify
    divided = list(map(divmod, map(mul, repeat(amount), values), repeat(total)))
    parts = dict(zip(keys, map(itemgetter(0), divided), strict=True))
    missing = amount - sum(parts.values())
    if missing:
        rems = list(map(itemgetter(1), divided))
        for key in _largest_remainders(keys, rems, total, missing):
            parts[key] += 1
    return parts


_FAST_RANK_MIN = 64  # below this many keys a plain sort is as fast


def _largest_remainders(keys: list[K], rems: list[int], total: int, count: int) -> list[K]:
    """The `count` keys with the largest remainders, ties by ascending key (exactly).

    Same answer as sorting every (-remainder, key) pair, but for many keys it ranks by
    remainder/total as a correctly rounded float64 first (numpy partition) and compares
    exactly only the keys whose float equals the one at the cut: correct rounding is
    monotone, so float order never contradicts exact order; it can only tie.
    """
    if count <= 0:
        return []
    if len(keys) < _FAST_RANK_MIN:
        return [k for _, k in sorted(zip((-r for r in rems), keys, strict=True))[:count]]
    # int / int is correctly rounded (hence monotone) however large the integers are
    prefix = np.fromiter(map(truediv, rems, repeat(total)), dtype=np.float64, count=len(rems))
    cut = float(np.partition(prefix, len(keys) - count)[len(keys) - count])
    above = np.flatnonzero(prefix > cut).tolist()
    at_cut = np.flatnonzero(prefix == cut).tolist()
    ties = sorted((-rems[i], keys[i]) for i in at_cut)[: count - len(above)]
    return [keys[i] for i in above] + [k for _, k in ties]
