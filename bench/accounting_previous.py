"""The accounting code before the benchmark pass of 2026-12-03, kept to measure against.

`split_exact` (with `integer_weights` and `_largest_remainders`) is verbatim from commit
33980a7 (`src/hashfarm/accounting/money.py`): a big-integer `divmod` per key and Fraction
arithmetic for Fraction weights. The previous window read is still in the tree as
`windowread._row_window` (PostgreSQL's path), called with the previous chunk of 100,000 rows.
Used by bench_accounting.py and bench_accounting_service.py; never by hashfarm itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from itertools import repeat
from operator import itemgetter, mul, truediv
from typing import TypeVar

import numpy as np

K = TypeVar("K", str, int)

PREVIOUS_CHUNK = 100_000  # rows per query of the previous window read


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
