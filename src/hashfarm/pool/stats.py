"""Live pool statistics from the share stream: hashrates, share counts, best shares, blocks.

`PoolStats` is a `PoolObserver`: the pool calls `on_share`/`on_block` synchronously for each
judged share and submitted block, so every update is O(1) and allocation-free. Hashrates are
estimated from accepted difficulty (each difficulty-1 share stands for 2**32 hashes) over
sliding windows of 1 minute, 5 minutes, 1 hour and 24 hours. Each window is a ring of 60
slots, so memory per worker is fixed however many shares it sends. The API reads frozen
snapshots (`PoolSnapshot`, `WorkerSnapshot`).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress
from operator import eq

from hashfarm.pool.records import REJECT_UNAUTHORIZED, BlockRecord, ShareRecord
from hashfarm.units import HashesPerSecond, hashrate_from_shares

WINDOWS: tuple[tuple[str, float], ...] = (
    ("1m", 60.0),
    ("5m", 300.0),
    ("1h", 3600.0),
    ("24h", 86400.0),
)
SLOTS = 60  # slots per window: a window's estimate moves in steps of span/60
STEP = WINDOWS[0][1] / SLOTS  # the shortest window's slot (1 s); every window's slot is a
# whole number of STEPs, so all of a STEP's shares fall in one slot of every window
assert all((span / SLOTS) % STEP == 0 for _, span in WINDOWS)
BLOCKS_KEPT = 1000  # most recent blocks held in memory for the API


class RateWindow:
    """The sum of amounts added over the last `span` seconds, in `SLOTS` slots."""

    __slots__ = ("_stamps", "_sums", "span", "width")

    def __init__(self, span: float) -> None:
        self.span = span
        self.width = span / SLOTS
        self._sums = [0.0] * SLOTS
        self._stamps = [-1] * SLOTS  # which slot number each cell currently holds

    def add(self, t: float, amount: float) -> None:
        """Add `amount` at time `t` (seconds)."""
        slot = int(t // self.width)
        i = slot % SLOTS
        if self._stamps[i] != slot:  # the cell held an older slot: recycle it
            self._stamps[i] = slot
            self._sums[i] = 0.0
        self._sums[i] += amount

    def total(self, now: float) -> float:
        """The sum over the slots that lie within `span` of `now`."""
        # Cell i only ever holds slot numbers congruent to i, so it counts exactly when its
        # stamp is the one slot of the window that falls on it: one C-level pass (compress,
        # map) instead of a generator, the same sum in the same order (API reads of 10,000
        # workers rank by this).
        return sum(compress(self._sums, map(eq, self._stamps, _live_slots(self.width, now))))


_LIVE: dict[float, tuple[int, list[int]]] = {}  # width -> (newest slot, its live_slots)


def _live_slots(width: float, now: float) -> list[int]:
    """Per cell, the slot number within the window ending at `now` that falls on it."""
    newest = int(now // width)
    known = _LIVE.get(width)
    if known is not None and known[0] == newest:
        return known[1]
    live = [0] * SLOTS
    for slot in range(newest - SLOTS + 1, newest + 1):
        live[slot % SLOTS] = slot
    _LIVE[width] = (newest, live)
    return live


class _Tally:
    """Counters shared by the pool as a whole and by each worker."""

    __slots__ = (
        "_pending",
        "_step",
        "accepted",
        "best_share",
        "blocks",
        "first_share",
        "last_share",
        "rejects",
        "windows",
    )

    def __init__(self) -> None:
        self.windows = [RateWindow(span) for _, span in WINDOWS]
        self._step = -1  # the STEP whose accepted difficulty `_pending` sums, not yet in windows
        self._pending = 0.0
        self.accepted = 0
        self.rejects: Counter[str] = Counter()
        self.best_share = 0.0
        self.blocks = 0
        self.first_share: float | None = None
        self.last_share: float | None = None

    def add(self, rec: ShareRecord) -> None:
        if self.first_share is None:
            self.first_share = rec.time
        self.last_share = rec.time
        if not rec.accepted:
            self.rejects[rec.reject_reason or "unknown"] += 1
            return
        self.accepted += 1
        if rec.share_difficulty > self.best_share:  # max(), without the call
            self.best_share = rec.share_difficulty
        # Summed per STEP, and into the four windows once per STEP (two tallies per share:
        # the pool's and the worker's), not four window updates per share.
        step = int(rec.time // STEP)
        if step != self._step:
            self.settle()
            self._step = step
        self._pending += rec.difficulty

    def settle(self) -> None:
        """Add the current STEP's sum to the windows (before anyone reads them)."""
        if self._pending:
            t, amount = self._step * STEP, self._pending
            self._pending = 0.0
            for w in self.windows:
                w.add(t, amount)

    def hashrates(self, now: float) -> dict[str, HashesPerSecond]:
        """Hashrate per window; a window longer than the history is divided by the history."""
        self.settle()
        seen = now - self.first_share if self.first_share is not None else 0.0
        return {
            name: hashrate_from_shares(w.total(now), max(min(span, seen), w.width))
            for (name, span), w in zip(WINDOWS, self.windows, strict=True)
        }


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    """One worker as the API shows it."""

    name: str  # full Stratum username
    account: str  # part before the first "."
    hashrate: dict[str, HashesPerSecond]  # by window name ("1m", "5m", "1h", "24h")
    shares_accepted: int
    shares_rejected: dict[str, int]  # by reject reason
    best_share: float  # highest difficulty of an accepted share
    last_share: float | None  # UNIX seconds
    blocks_found: int


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """The pool as a whole."""

    hashrate: dict[str, HashesPerSecond]
    workers: int  # workers that sent a share within the longest window
    shares_accepted: int
    shares_rejected: dict[str, int]
    best_share: float
    blocks_found: int  # blocks the node accepted
    blocks_rejected: int  # blocks the node refused
    last_share: float | None


class PoolStats:
    """A PoolObserver that keeps the counters the API and /metrics show."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pool = _Tally()
        self._workers: dict[str, _Tally] = {}
        self._accounts: dict[str, str] = {}
        self._blocks: deque[BlockRecord] = deque(maxlen=BLOCKS_KEPT)
        self._blocks_rejected = 0

    def on_share(self, rec: ShareRecord) -> None:
        """Count one judged share; a name the connection never authorized counts for the pool
        only (anyone may submit under made-up names: each would cost a tally for 24 hours
        and a /metrics label)."""
        self._pool.add(rec)
        if rec.reject_reason == REJECT_UNAUTHORIZED:
            return
        tally = self._workers.get(rec.worker)
        if tally is None:
            tally = self._workers[rec.worker] = _Tally()
            self._accounts[rec.worker] = rec.account
        tally.add(rec)

    def on_block(self, rec: BlockRecord) -> None:
        """Count one submitted block, credited to its finder when the node accepted it."""
        self._blocks.append(rec)
        if not rec.accepted_by_node:
            self._blocks_rejected += 1
            return
        self._pool.blocks += 1
        finder = self._workers.get(rec.finder_worker)
        if finder is not None:
            finder.blocks += 1

    def pool(self) -> PoolSnapshot:
        """The whole pool now."""
        now, p = self._clock(), self._pool
        horizon = now - WINDOWS[-1][1]
        active = sum(1 for t in self._workers.values() if (t.last_share or 0.0) >= horizon)
        return PoolSnapshot(
            hashrate=p.hashrates(now),
            workers=active,
            shares_accepted=p.accepted,
            shares_rejected=dict(p.rejects),
            best_share=p.best_share,
            blocks_found=p.blocks,
            blocks_rejected=self._blocks_rejected,
            last_share=p.last_share,
        )

    def workers(self) -> list[WorkerSnapshot]:
        """Every worker seen, busiest (5-minute hashrate) first."""
        snaps = [self._snapshot(name, self._clock()) for name in self._workers]
        return sorted(snaps, key=lambda w: (-w.hashrate["5m"], w.name))

    def worker(self, name: str) -> WorkerSnapshot | None:
        """One worker by its full name, or None when it never sent a share."""
        return self._snapshot(name, self._clock()) if name in self._workers else None

    def busiest(self, n: int, window: str = "5m") -> list[WorkerSnapshot]:
        """The first `n` of `workers()` (same order), at the cost of one window per worker
        plus `n` snapshots: what a page showing the top of 10,000 workers can afford."""
        now = self._clock()
        ranked = self._rates(window, now)
        return [self._snapshot(name, now) for _, name in heapq.nsmallest(n, ranked)]

    def ranked(self, window: str = "5m") -> list[str]:
        """Every worker's name in the order of `workers()` (busiest first, then by name), at
        the cost of one window per worker and no snapshot: what pages through 10,000
        workers (`/api/workers?offset=`) rank once and share."""
        return [name for _, name in sorted(self._rates(window, self._clock()))]

    def _rates(self, window: str, now: float) -> list[tuple[float, str]]:
        """(-hashrate in `window`, name) per worker: the sort key of `workers()`."""
        index = [name for name, _ in WINDOWS].index(window)
        span = WINDOWS[index][1]
        width = span / SLOTS
        live = _live_slots(width, now)  # RateWindow.total written out, its slots found once
        rates = []
        for name, t in self._workers.items():
            t.settle()
            w = t.windows[index]
            total = sum(compress(w._sums, map(eq, w._stamps, live)))
            seen = now - t.first_share if t.first_share is not None else 0.0
            rates.append((-hashrate_from_shares(total, max(min(span, seen), width)), name))
        return rates

    def of_account(self, account: str) -> list[WorkerSnapshot]:
        """The workers of `account` (the part of their names before the first "."), busiest
        (5-minute hashrate) first."""
        now = self._clock()
        snaps = [self._snapshot(n, now) for n, a in self._accounts.items() if a == account]
        return sorted(snaps, key=lambda w: (-w.hashrate["5m"], w.name))

    def blocks(self) -> list[BlockRecord]:
        """Blocks submitted since start, newest first (at most BLOCKS_KEPT)."""
        return list(reversed(self._blocks))

    def forget_idle(self, older_than: float = WINDOWS[-1][1]) -> int:
        """Drop workers silent for `older_than` seconds (bounds memory); return how many."""
        horizon = self._clock() - older_than
        idle = [n for n, t in self._workers.items() if (t.last_share or 0.0) < horizon]
        for name in idle:
            del self._workers[name], self._accounts[name]
        return len(idle)

    def _snapshot(self, name: str, now: float) -> WorkerSnapshot:
        t = self._workers[name]
        return WorkerSnapshot(
            name=name,
            account=self._accounts[name],
            hashrate=t.hashrates(now),
            shares_accepted=t.accepted,
            shares_rejected=dict(t.rejects),
            best_share=t.best_share,
            last_share=t.last_share,
            blocks_found=t.blocks,
        )
