"""The PPLNS/TIDES window over a million shares, exactly, with numpy.

Same result as `window.pplns_window` (the reference it is tested against), for shares held
as two arrays in ledger order: `accounts` (a small integer per account) and `difficulty`
(float64). No float rounding reaches money: every float64 is `m * 2**e` with an integer
mantissa `m < 2**53`, so a sum of shares is an exact integer once all terms are scaled to
the smallest exponent present. numpy sums the mantissas grouped by (account, exponent), split
in 26/27-bit halves so that float64 `bincount` sums stay below 2**53 and are therefore exact;
Python integers then put the few groups back together.

The window's edge is first located with a float cumulative sum (cheap, nearly right) and
then settled with exact integers, moving one share at a time until the exact edge rule holds,
so float error can cost time but never change the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

_LO_BITS = 27  # mantissa split: hi < 2**26, lo < 2**27
_MAX_SHARES = 1 << 26  # bincount sums of 2**27-bounded halves stay exact below 2**53

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FastWindow:
    """Integer weights per account index, all over one common `denominator`."""

    weights: dict[int, int]  # account index -> weight * denominator
    denominator: int
    total: int  # sum of weights (same scale)
    start: int  # index of the oldest share counted (len(difficulty) when empty)
    edge_fraction: Fraction  # part of that share counted

    def as_fractions(self) -> dict[int, Fraction]:
        """The weights as exact fractions (tests compare them with the reference)."""
        return {k: Fraction(w, self.denominator) for k, w in self.weights.items()}


class _Exact:
    """The ledger's difficulties as exact integers in units of 2**emin."""

    def __init__(self, difficulty: FloatArray) -> None:
        if difficulty.size and not (np.all(np.isfinite(difficulty)) and difficulty.min() > 0):
            raise ValueError("share difficulties must be positive and finite")
        if difficulty.size > _MAX_SHARES:
            raise ValueError(f"more than {_MAX_SHARES} shares in one window computation")
        mant, exp = np.frexp(difficulty)
        self.mantissa = (mant * float(1 << 53)).astype(np.int64)  # exact: 53 significant bits
        exp = exp.astype(np.int64) - 53
        self.emin = int(exp.min()) if exp.size else 0
        self.shift = exp - self.emin  # >= 0: the value is mantissa << shift units

    def one(self, i: int) -> int:
        """Share i exactly, in units."""
        return int(self.mantissa[i]) << int(self.shift[i])

    def total(self, start: int) -> int:
        """Exact sum of shares[start:], in units."""
        shift = self.shift[start:]
        if shift.size == 0:
            return 0
        mant = self.mantissa[start:]
        hi = np.bincount(shift, weights=(mant >> _LO_BITS).astype(np.float64))
        lo = np.bincount(shift, weights=(mant & ((1 << _LO_BITS) - 1)).astype(np.float64))
        total = 0
        for s in np.flatnonzero(hi + lo).tolist():
            total += ((int(hi[s]) << _LO_BITS) + int(lo[s])) << s
        return total

    def per_account(self, accounts: IntArray, start: int) -> dict[int, int]:
        """Exact sum per account index of shares[start:], in units."""
        acc = accounts[start:]
        shift = self.shift[start:]
        if acc.size == 0:
            return {}
        nshift = int(shift.max()) + 1
        key = acc * nshift + shift
        mant = self.mantissa[start:]
        hi_w = (mant >> _LO_BITS).astype(np.float64)
        lo_w = (mant & ((1 << _LO_BITS) - 1)).astype(np.float64)
        if int(key.max()) < 4 * key.size + (1 << 20):  # dense keys: count straight into bins
            hi = np.bincount(key, weights=hi_w)
            lo = np.bincount(key, weights=lo_w)
            present = np.flatnonzero(hi + lo)
            groups, hi, lo = present, hi[present], lo[present]
        else:  # sparse keys (huge account indexes): sort them into groups first
            groups, inverse = np.unique(key, return_inverse=True)
            hi = np.bincount(inverse, weights=hi_w)
            lo = np.bincount(inverse, weights=lo_w)
        out: dict[int, int] = {}
        for g, h, low in zip(groups.tolist(), hi.tolist(), lo.tolist(), strict=True):
            a, s = divmod(g, nshift)
            out[a] = out.get(a, 0) + (((int(h) << _LO_BITS) + int(low)) << s)
        return out


def exact_sum(difficulty: FloatArray) -> Fraction:
    """The exact sum of the difficulties (any order: a set of shares' total work)."""
    if difficulty.size == 0:
        return Fraction(0)
    ex = _Exact(difficulty)
    return ex.total(0) * Fraction(2) ** ex.emin


def fast_pplns_window(accounts: IntArray, difficulty: FloatArray, size: Fraction) -> FastWindow:
    """The window of `size` difficulty units ending at the last share (oldest first)."""
    if size <= 0:
        raise ValueError(f"window size {size} must be positive")
    n = int(difficulty.size)
    if accounts.shape != difficulty.shape or (n and int(accounts.min()) < 0):
        raise ValueError("accounts must be one non-negative index per share")
    if n == 0:
        return FastWindow({}, 1, 0, 0, Fraction(1))
    ex = _Exact(difficulty)
    units = size * Fraction(2) ** (-ex.emin)  # the window in the same integer units
    start = _float_guess(difficulty, float(size))
    newer = ex.total(start + 1) if start + 1 <= n else 0  # exact sum after the edge share
    start, newer = _settle_edge(ex, start, newer, units, n)
    if start < 0:  # the shares ran out before the window was full: all of them count
        return _result(ex.per_account(accounts, 0), 1, ex.emin, 0, Fraction(1))
    edge_share = ex.one(start)
    inside = units - newer  # the edge share's part inside the window
    weights = ex.per_account(accounts, start + 1)
    common = inside.denominator
    scaled = {a: w * common for a, w in weights.items()}
    edge_account = int(accounts[start])
    scaled[edge_account] = scaled.get(edge_account, 0) + inside.numerator
    return _result(scaled, common, ex.emin, start, inside / edge_share)


def _float_guess(difficulty: FloatArray, size: float) -> int:
    """Index of the edge share by float arithmetic (-1: the window is not full)."""
    newest_first = np.cumsum(difficulty[::-1])
    k = int(np.searchsorted(newest_first, size, side="left"))
    return difficulty.size - 1 - k if k < difficulty.size else -1


def _settle_edge(ex: _Exact, start: int, newer: int, units: Fraction, n: int) -> tuple[int, int]:
    """Move the edge until, exactly: newer < units <= newer + share[start].

    `newer` is the exact sum of shares[start+1:]. Returns (-1, total) when even all the
    shares do not fill the window.
    """
    while start + 1 < n and newer >= units:  # too far back: the edge is a newer share
        start += 1
        newer -= ex.one(start)
    while start >= 0 and newer + ex.one(start) < units:  # not far enough back
        newer += ex.one(start)
        start -= 1
    return start, newer


def _result(
    weights: dict[int, int], common: int, emin: int, start: int, edge: Fraction
) -> FastWindow:
    """Weights in units of 2**emin / common, restated over one integer denominator."""
    if emin >= 0:
        live = {a: w << emin for a, w in weights.items() if w > 0}
        denominator = common
    else:
        live = {a: w for a, w in weights.items() if w > 0}
        denominator = common << -emin
    return FastWindow(live, denominator, sum(live.values()), start, edge)
