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
from operator import attrgetter, itemgetter, mul, rshift, truediv
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
    return dict(zip(weights, _on_common_denominator(list(weights.values())), strict=True))


_NUMERATOR, _DENOMINATOR = attrgetter("numerator"), attrgetter("denominator")
# Fraction's own slots: its public numerator/denominator are properties, a Python call each
_FRACTION_PARTS = attrgetter("_numerator"), attrgetter("_denominator")


def _on_common_denominator(values: list[Fraction | int]) -> list[int]:
    """Each value times the lcm of their denominators (ints have denominator 1).

    Integer arithmetic in C-level passes: a Fraction product or sum per key costs
    microseconds, and this runs over every account of a window before a TIDES job's notify.
    """
    try:  # Fractions (a window's weights): their slots directly
        nums: list[int] = list(map(_FRACTION_PARTS[0], values))
        dens: list[int] = list(map(_FRACTION_PARTS[1], values))
    except AttributeError:
        if set(map(type, values)) <= {int}:
            return values  # type: ignore[return-value]  # all plain ints
        try:
            nums, dens = list(map(_NUMERATOR, values)), list(map(_DENOMINATOR, values))
        except AttributeError as exc:  # a float, a Decimal...: never rounded into money
            raise TypeError("weights must be integers or Fractions") from exc
    try:  # group the denominators with numpy (no big-integer hash per key) when they fit
        packed = np.fromiter(dens, dtype=np.int64, count=len(dens))
    except OverflowError:
        if dens.count(dens[0]) == len(dens):
            return nums
        distinct = set(dens)
        common = math.lcm(*distinct)
        scale = {d: common // d for d in distinct}
        return list(map(mul, nums, map(scale.__getitem__, dens)))
    if not packed.size or bool((packed == packed[0]).all()):  # already on one denominator
        return nums
    grouped, inverse = np.unique(packed, return_inverse=True)
    distinct_dens: list[int] = grouped.tolist()
    common = math.lcm(*distinct_dens)
    scales = [common // d for d in distinct_dens]
    return list(map(mul, nums, map(scales.__getitem__, inverse.tolist())))


def split_exact(amount: int, weights: Mapping[K, Fraction | int]) -> dict[K, int]:
    """Split `amount` satoshis over `weights` so the parts sum to `amount` exactly.

    Keys with weight 0 get nothing and are left out; a negative weight, a negative amount or
    an all-zero set of weights (with a non-zero amount) is a ValueError. See the module
    docstring for the remainder rule (largest remainder, ties by ascending key).
    """
    if amount < 0:
        raise ValueError(f"amount {amount} is negative")
    keys = list(weights)
    values = _on_common_denominator(list(weights.values()))
    if values and min(values) < 0:
        raise ValueError("a weight is negative")
    total = sum(values)
    if total == 0:
        if amount == 0:
            return {}
        raise ValueError(f"cannot split {amount} sats over zero total weight")
    if 0 in values:
        keys = [k for k, w in zip(keys, values, strict=True) if w]
        values = [w for w in values if w]
    if len(keys) >= _FAST_RANK_MIN:
        if amount.bit_length() + total.bit_length() <= _INT64_BITS:
            return dict(zip(keys, _split_int64(amount, keys, values, total), strict=True))
        if amount < _FLOAT_MAX_AMOUNT:
            return dict(zip(keys, _split_float(amount, keys, values, total), strict=True))
    # map() keeps these passes in C (amounts too big for the float estimate, or few keys)
    divided = list(map(divmod, map(mul, repeat(amount), values), repeat(total)))
    parts = dict(zip(keys, map(itemgetter(0), divided), strict=True))
    missing = amount - sum(parts.values())
    if missing:
        rems = list(map(itemgetter(1), divided))
        for key in _largest_remainders(keys, rems, total, missing):
            parts[key] += 1
    return parts


_FAST_RANK_MIN = 64  # below this many keys a plain sort is as fast
_INT64_BITS = 62  # amount * weight and total both below 2**62: exact in int64
_FLOAT_MAX_AMOUNT = 1 << 45  # the float estimate errs by < amount * 2**-50: ~3e-2 at most


def _split_int64(amount: int, keys: list[K], values: list[int], total: int) -> list[int]:
    """The parts when every `amount * w` fits in int64: exact numpy integer arithmetic."""
    w = np.fromiter(values, dtype=np.int64, count=len(values))
    prod = w * amount
    parts = prod // total
    missing = amount - int(parts.sum())
    if missing:
        rems = prod - parts * total
        n = len(keys)
        cut = int(np.partition(rems, n - missing)[n - missing])
        above = np.flatnonzero(rems > cut)
        at_cut = np.flatnonzero(rems == cut).tolist()
        ties = sorted(at_cut, key=keys.__getitem__)[: missing - above.size]
        parts[above] += 1
        parts[ties] += 1
    out: list[int] = parts.tolist()
    return out


def _split_float(amount: int, keys: list[K], values: list[int], total: int) -> list[int]:
    """The parts for big integer weights: float64 estimates, settled exactly where unsure.

    x_i = amount * w_i / total is estimated as (w_i / total) * amount from correctly rounded
    float64 conversions: four roundings of relative error 2**-53 each (plus a shift of huge
    weights, far smaller), so |x_est - x_i| < 5 * 2**-53 * amount, which `err` bounds with over
    16x slack (`amount < 2**45` keeps it below 1/2). Then, exactly:

    * floor(x_est) is floor(x_i) unless frac(x_est) is within `err` of an integer; those
      (rare) keys get the exact `divmod` and their exact fraction;
    * with c the m-th largest estimated fraction (m = satoshis still missing), a key whose
      estimate exceeds c + 2 err is surely among the m largest exact remainders (fewer than
      m estimates exceed c, and every key whose exact remainder is at least its own does),
      and one below c - 2 err surely is not (at least m estimates reach c); the keys in
      between are ranked by their exact integer remainders, ties by ascending key.
    """
    n = len(values)
    shift = max(0, total.bit_length() - 1000)  # float64 holds 2**1023 at most
    scaled = values if not shift else list(map(rshift, values, repeat(shift)))
    x = np.fromiter(map(float, scaled), dtype=np.float64, count=n)
    x /= float(total >> shift)
    x *= float(amount)
    floor = np.floor(x)
    frac = x - floor  # exact: an integer part off a float64
    err = amount * 2.0**-46 + 2.0**-500
    for i in np.flatnonzero((frac < err) | (frac > 1.0 - err)).tolist():
        q, r = divmod(amount * values[i], total)
        floor[i] = q  # < 2**45: exact in float64
        frac[i] = r / total  # correctly rounded: within err of the exact fraction
    parts = floor.astype(np.int64)
    missing = amount - int(parts.sum())
    if missing:
        cut = float(np.partition(frac, n - missing)[n - missing])
        sure = np.flatnonzero(frac > cut + 2 * err)
        unsure = np.flatnonzero((frac >= cut - 2 * err) & (frac <= cut + 2 * err)).tolist()
        exact = [(-(amount * values[i] - int(parts[i]) * total), keys[i], i) for i in unsure]
        ties = [i for _, _, i in sorted(exact)[: missing - sure.size]]
        parts[sure] += 1
        parts[ties] += 1
    out: list[int] = parts.tolist()
    return out


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
