"""What the miner counts: hashrate per thread (5 s and 1 min), verdicts, best share, latency.

Pure bookkeeping with the time passed in, read by the display and the JSON log lines.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

SHORT_WINDOW = 5.0  # seconds of the "5 s" hashrate
LONG_WINDOW = 60.0  # seconds of the "1 min" hashrate
LATENCY_SMOOTHING = 0.2  # weight of the newest submit round trip in the moving average


class RateMeter:
    """Hashes done, timestamped at the end of each scan; rates over trailing windows."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.total = 0
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, hashes: int, now: float) -> None:
        """Count `hashes` finished at `now`; forget samples older than the long window."""
        self.total += hashes
        self._samples.append((now, hashes))
        while self._samples and self._samples[0][0] < now - LONG_WINDOW:
            self._samples.popleft()

    def rate(self, window: float, now: float) -> float:
        """Hashes per second over the last `window` seconds (or since start, if shorter)."""
        span = min(window, now - self.started)
        if span <= 0:
            return 0.0
        done = sum(n for t, n in self._samples if t > now - window)
        return done / span


@dataclass
class MinerStats:
    """Counters for one miner run; the display and JSON lines read `snapshot`."""

    backend: str
    threads: int
    started: float
    pool: str = ""
    connected: bool = False
    difficulty: float = 0.0
    accepted: int = 0
    accepted_difficulty: float = 0.0  # sum of the difficulties accepted shares were held to
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    stale_dropped: int = 0  # shares found for a job the tip had moved past (never sent)
    hardware_errors: int = 0  # nonces a backend reported that did not meet the target
    best_share: float = 0.0  # highest share difficulty found
    blocks: int = 0  # blocks found (solo mode: accepted by the node)
    latency: float | None = None  # seconds, moving average of submit round trips
    last_latency: float | None = None
    meters: list[RateMeter] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.meters:
            self.meters = [RateMeter(self.started) for _ in range(self.threads)]

    def add_hashes(self, thread: int, hashes: int, now: float) -> None:
        """A scan of `hashes` nonces finished on `thread`."""
        self.meters[thread].add(hashes, now)

    def found(self, difficulty: float) -> None:
        """A share met the target (before the pool judged it)."""
        self.best_share = max(self.best_share, difficulty)

    def verdict(
        self, accepted: bool, reason: str | None, difficulty: float, latency: float
    ) -> None:
        """The pool answered a submit."""
        if accepted:
            self.accepted += 1
            self.accepted_difficulty += difficulty
        else:
            self.rejected[reason or "rejected"] += 1
        self.last_latency = latency
        if self.latency is None:
            self.latency = latency
        else:
            self.latency += LATENCY_SMOOTHING * (latency - self.latency)

    def hashrate(self, window: float, now: float, thread: int | None = None) -> float:
        """Hashes per second of one thread, or of all."""
        meters = self.meters if thread is None else [self.meters[thread]]
        return sum(m.rate(window, now) for m in meters)

    def snapshot(self, now: float) -> dict[str, Any]:
        """Every figure, JSON-ready (hashrates in H/s, latency in ms)."""
        return {
            "backend": self.backend,
            "pool": self.pool,
            "connected": self.connected,
            "uptime_s": round(now - self.started, 3),
            "hashrate_5s": self.hashrate(SHORT_WINDOW, now),
            "hashrate_1m": self.hashrate(LONG_WINDOW, now),
            "threads_5s": [self.hashrate(SHORT_WINDOW, now, i) for i in range(self.threads)],
            "hashes": sum(m.total for m in self.meters),
            "difficulty": self.difficulty,
            "accepted": self.accepted,
            "rejected": sum(self.rejected.values()),
            "reject_reasons": dict(self.rejected),
            "stale_dropped": self.stale_dropped,
            "hardware_errors": self.hardware_errors,
            "best_share": self.best_share,
            "blocks": self.blocks,
            "latency_ms": None if self.latency is None else round(self.latency * 1000, 2),
        }
