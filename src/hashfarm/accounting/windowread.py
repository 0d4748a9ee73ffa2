"""A PPLNS window's shares read from the pool's `shares` table, exactly and without a row each.

`read_window(sql, after, until, size, chunk)` is `window.pplns_window` over the accepted
shares with `after < id <= until` (oldest first), but a million shares are not fetched as a
million Python tuples, which cost more than everything else together. On SQLite it walks
back from the newest share in id ranges of `chunk` ids, each range read as ONE row of
aggregates:

* `group_concat` of the accounts (newline-separated) and of each difficulty as two exact
  integers, `i = CAST(d * 2**k AS INTEGER)` and `f = CAST((d * 2**k - i) * 2**52 AS INTEGER)`:
  when `1 <= d * 2**k < 2**62` the fraction of a float64 is a multiple of 2**-52, so
  `d = (i + f * 2**-52) / 2**k` exactly (every step is an exact float64 operation: a power-of-
  two scaling, a truncation, the sum of two truncations of one float64). Parsed with numpy;
* `count(*)` and `max(difficulty)`, which with `1 <= i < 2**62` for every share check that the
  numbers are whole: a TEXT or BLOB difficulty (it sorts above every number), a value <= 0 or
  infinite, or an account containing a newline (more names than rows) sends the read to
  `_RANGE_SQL` for a new `k`, and failing that to the row path below, which refuses
  impossible rows as before. (The pool's `difficulty` is NOT NULL, so no NaN is stored.)

Aggregates have no defined row order, and none is needed inside the window: a chunk all of
whose shares count contributes its exact per-account sums whatever their order. The edge is
found exactly: chunk totals are summed in float64 (relative error < 1e-12), and where that
sum is within `_MARGIN` of the window's size the exact sums (`fastwindow.exact_sum`) decide.
The chunk holding the edge is read again row by row in id order, and
`fastwindow.fast_pplns_window` runs over [that chunk, oldest first] + [the newer chunks, in
any order]: its exact edge lies in the ordered part by construction, so the weights, the
oldest share and the edge fraction are the reference's. A stretch of ids without accepted
shares is jumped over (`_NEWEST_SQL`), not walked.

PostgreSQL (and a read that fails a check) takes the row path, as before this module:
`SELECT id, account, difficulty` newest first, `chunk` rows a query, then the exact window.
Weights come back in account order.
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from hashfarm.accounting.fastwindow import FastWindow, exact_sum, fast_pplns_window
from hashfarm.accounting.store import SqlStore
from hashfarm.accounting.window import Window

_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
_UNIT = float(1 << 52)  # the fraction of d * 2**k >= 1 is a multiple of 2**-52
_LIMIT = 1 << 62  # d * 2**k stays below this: CAST to INTEGER is exact
_MAX_SCALE_EXP = 1000  # 2**k stays a finite float64
_MARGIN = 1e-9  # far above the float error of summing positive float64s (n * 2**-53)

_SHARES = "FROM shares WHERE accepted AND id > ? AND id <= ?"
_CHUNK_SQL = (
    "SELECT count(*), max(difficulty), group_concat(account, char(10)), "
    "group_concat(CAST(difficulty * ? AS INTEGER)), "
    "group_concat(CAST((difficulty * ? - CAST(difficulty * ? AS INTEGER)) * ? "
    f"AS INTEGER)) {_SHARES}"
)
_RANGE_SQL = f"SELECT min(difficulty), max(difficulty), count(difficulty), count(*) {_SHARES}"
_NEWEST_SQL = f"SELECT id {_SHARES} ORDER BY id DESC LIMIT 1"
_OLDEST_SQL = f"SELECT id {_SHARES} ORDER BY id LIMIT 1"
_ORDERED_SQL = f"SELECT id, account, difficulty {_SHARES} ORDER BY id DESC"
_ROWS_SQL = (
    "SELECT id, account, difficulty FROM shares "
    "WHERE accepted AND id > ? AND id <= ? ORDER BY id DESC LIMIT ?"
)

Chunk = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]  # account indexes, difficulties


def read_window(sql: SqlStore, after: int, until: int, size: Fraction, chunk: int) -> Window:
    """The window of `size` ending at share `until`, not reaching back to share `after`."""
    if size <= 0:
        raise ValueError(f"window size {size} must be positive")
    if chunk < 1:
        raise ValueError(f"chunk {chunk} must be positive")
    if sql.dialect == "sqlite":
        window = _Aggregated(sql, after, chunk).window(until, size)
        if window is not None:
            return window
    return _row_window(sql, after, until, size, chunk)


class _Aggregated:
    """SQLite: id ranges of `chunk` ids as aggregate rows (see the module docstring)."""

    def __init__(self, sql: SqlStore, after: int, chunk: int) -> None:
        self.sql = sql
        self.after = after
        self.chunk = chunk
        self.index: dict[str, int] = {}  # account -> its integer in the arrays
        self.exp = 0  # the scale 2**exp of the decomposition, kept from chunk to chunk

    def _one(self, query: str, low: int, high: int) -> tuple[Any, ...] | None:
        rows = self.sql.q(query, (low, high))
        return rows[0] if rows else None

    def window(self, until: int, size: Fraction) -> Window | None:
        """The window, or None when a chunk failed a check (the row path decides)."""
        first = self._one(_NEWEST_SQL, self.after, until)
        if first is None:
            return Window({}, size, Fraction(0), None, None, Fraction(1))
        newest = int(first[0])
        accounts: list[npt.NDArray[np.int64]] = []
        difficulty: list[npt.NDArray[np.float64]] = []
        newer = 0.0  # work of the chunks read so far (float: a relative error < 1e-12)
        target = float(size)
        high = newest
        while high > self.after:
            low = max(self.after, high - self.chunk)
            got = self._chunk(low, high)
            if got is None:
                return None
            acc, diff = got
            if acc.size == 0:  # a stretch without accepted shares: jump to the next one
                below = self._one(_NEWEST_SQL, self.after, low)
                high = self.after if below is None else int(below[0])
                continue
            work = float(diff.sum())
            if newer + work >= target * (1 - _MARGIN) and (  # near or past the edge: exactly
                newer + work > target * (1 + _MARGIN)
                or exact_sum(np.concatenate([diff, *difficulty])) >= size
            ):  # the edge share is in this chunk: read it in order
                rows = self.sql.q(_ORDERED_SQL, (low, high))[::-1]
                ids = list(map(_FIRST, rows))
                edge_acc = self._indexes(list(map(_SECOND, rows)))
                edge_diff = np.fromiter(map(_THIRD, rows), dtype=np.float64, count=len(rows))
                fast = fast_pplns_window(
                    np.concatenate([edge_acc, *accounts]),
                    np.concatenate([edge_diff, *difficulty]),
                    size,
                )
                if fast.start >= len(ids):  # impossible: the exact sums said otherwise
                    raise AssertionError("the window's edge left the ordered chunk")
                return _window(fast, size, ids[fast.start], newest, list(self.index))
            newer += work
            accounts.append(acc)
            difficulty.append(diff)
            high = low
        # the shares ran out before the window was full: every one counts, in any order
        oldest = self._one(_OLDEST_SQL, self.after, newest)
        if oldest is None:  # impossible: the newest share is one
            raise AssertionError("the window's shares went away while read")
        fast = fast_pplns_window(np.concatenate(accounts), np.concatenate(difficulty), size)
        return _window(fast, size, int(oldest[0]), newest, list(self.index))

    def _chunk(self, low: int, high: int) -> Chunk | None:
        """The accepted shares with low < id <= high, or None when a check failed."""
        for _ in range(2):  # a second try with the scale this chunk needs
            scale = 2.0**self.exp
            params = (scale, scale, scale, _UNIT, low, high)
            count, top, names, ints, fracs = self.sql.q(_CHUNK_SQL, params)[0]
            if count == 0:
                return np.empty(0, np.int64), np.empty(0, np.float64)
            if type(top) is not float:  # a TEXT or BLOB difficulty sorts above every number
                return None
            accounts = names.split("\n")
            whole = np.fromstring(ints or "", dtype=np.int64, sep=",")
            part = np.fromstring(fracs or "", dtype=np.int64, sep=",")
            if len(accounts) != count:  # an account name holds a newline: rows decide
                return None
            if whole.size == count == part.size and whole.min() >= 1 and whole.max() < _LIMIT:
                # 1 <= d * 2**k < 2**62 for every share: d is rebuilt exactly
                scaled = whole.astype(np.float64) + part.astype(np.float64) / _UNIT
                return self._indexes(accounts), scaled / 2.0**self.exp
            if not self._rescale(low, high):  # NULL (NaN), <= 0, inf, or a new range
                return None
        return None

    def _rescale(self, low: int, high: int) -> bool:
        """Pick the scale for this chunk's range; False when no scale serves it."""
        row = self._one(_RANGE_SQL, low, high)
        if row is None:
            return False
        dmin, dmax, numeric, count = row
        if numeric != count or type(dmin) is not float or type(dmax) is not float:
            return False
        if not (dmin > 0 and math.isfinite(dmax)):
            return False
        need = max(0, 1 - math.frexp(dmin)[1])  # the least k with dmin * 2**k >= 1
        if need > _MAX_SCALE_EXP or dmax * 2.0**need >= float(_LIMIT) or need == self.exp:
            return False
        self.exp = need
        return True

    def _indexes(self, names: list[str]) -> npt.NDArray[np.int64]:
        """The accounts' integers (new accounts numbered as they come)."""
        index = self.index
        got = np.fromiter(map(index.get, names, repeat(-1)), dtype=np.int64, count=len(names))
        for i in np.flatnonzero(got < 0).tolist():  # accounts not seen before this chunk
            got[i] = index.setdefault(names[i], len(index))
        return got


def _window(fast: FastWindow, size: Fraction, oldest: int, newest: int, names: list[str]) -> Window:
    """The `Window` of a `FastWindow` (weights by account name, in name order)."""
    den = fast.denominator
    weights = dict(sorted((names[a], Fraction(w, den)) for a, w in fast.weights.items()))
    return Window(weights, size, Fraction(fast.total, den), oldest, newest, fast.edge_fraction)


def _row_window(sql: SqlStore, after: int, until: int, size: Fraction, chunk: int) -> Window:
    """The row path: shares newest first, `chunk` rows per query, until their float sum
    passes the window (with a margin far above float error) or they run out; then the exact
    window. Should the exact total still fall short while shares remain, more are read."""
    ids: list[int] = []
    names: list[str] = []
    diffs: list[float] = []  # newest first, as read
    upper, exhausted, running = until, False, 0.0
    need = float(size) * (1 + 1e-6)  # float sums of 10^6 shares err by ~1e-10, relatively
    while True:
        while not exhausted and running < need:
            rows = sql.q(_ROWS_SQL, (after, upper, chunk))
            if rows:
                ids.extend(map(_FIRST, rows))
                names.extend(map(_SECOND, rows))
                diffs.extend(map(_THIRD, rows))
                running += math.fsum(map(_THIRD, rows))
                upper = int(rows[-1][0]) - 1  # the next read starts below the oldest read
            exhausted = len(rows) < chunk
        if not ids:
            return Window({}, size, Fraction(0), None, None, Fraction(1))
        by_index = list(dict.fromkeys(map(str, names)))
        index = {name: i for i, name in enumerate(by_index)}
        accounts = np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names))
        fast = fast_pplns_window(accounts[::-1], np.asarray(diffs, dtype=np.float64)[::-1], size)
        window = _window(fast, size, int(ids[len(ids) - 1 - fast.start]), int(ids[0]), by_index)
        if window.full or exhausted:
            return window
        need *= 2
