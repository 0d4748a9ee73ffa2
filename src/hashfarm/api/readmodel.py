"""What the HTTP API reads, declared as narrow Protocols, and the JSON shapes it serves.

The API never reaches into the pool's internals: `cli` hands it the running `Pool` (which
satisfies `PoolView`), the `PoolStats` observer and the ledger (a `BlockHistory`). Every
answer is built here from frozen snapshots, so the HTTP layer only encodes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson

from hashfarm.pool.jobs import PoolJob
from hashfarm.pool.records import BlockRecord
from hashfarm.pool.stats import PoolStats, WorkerSnapshot
from hashfarm.units import format_hashrate

WORKERS_LIMIT = 100  # workers on one /api/workers page unless `limit` says otherwise
WORKERS_LIMIT_MAX = 1000  # the most one page may hold (about 60 ms of the loop at 10,000)
WORKERS_TTL = 2.0  # seconds the ranking of every worker (and each page) is shared
WORKERS_PAGES_KEPT = 16  # encoded pages kept for WORKERS_TTL (at most ~6 MB at 1000 each)


class BanEntry(Protocol):
    """One ban as the pool's ban list holds it (`hashfarm.pool.bans.Ban`)."""

    @property
    def ip(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def since(self) -> float: ...
    @property
    def until(self) -> float: ...


class BanControl(Protocol):
    """The pool's ban list (`hashfarm.pool.bans.BanList`): read by anyone, changed by admins."""

    def active(self, now: float) -> Sequence[BanEntry]:
        """Bans in force at `now` (UNIX seconds)."""
        ...

    def lift(self, ip: str) -> bool:
        """End the ban on `ip` now; False when there was none."""
        ...

    def ban(self, ip: str, reason: str, now: float, seconds: float | None = None) -> BanEntry:
        """Ban `ip` from `now` for `seconds` (None: the pool's default duration)."""
        ...


class PoolView(Protocol):
    """The side of the running pool (`hashfarm.pool.service.Pool`) the API sees."""

    def sessions(self) -> Collection[Any]:
        """The connected Stratum sessions (only their number is shown)."""
        ...

    def current_job(self) -> PoolJob | None:
        """The newest job, or None before the first template."""
        ...

    @property
    def bans(self) -> BanControl:
        """The addresses refused at accept (only admins see or change them)."""
        ...


class BlockHistory(Protocol):
    """Blocks as recorded durably (the ledger), newest first."""

    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        """At most `limit` blocks, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """Facts fixed at start that the API reports."""

    network: str  # network name from the settings
    mode: str  # solo or pooled
    stratum_port: int  # where miners connect
    started: float  # UNIX seconds


@dataclass(frozen=True, slots=True)
class ReadModel:
    """Everything the API reads, bundled by `cli`."""

    info: PoolInfo
    pool: PoolView
    stats: PoolStats
    history: BlockHistory
    worker_pages: WorkerPages = field(default_factory=lambda: WorkerPages(), compare=False,
                                      repr=False)  # fmt: skip

    def pool_json(self) -> dict[str, Any]:
        """The `/api/pool` document."""
        snap = self.stats.pool()
        return {
            "network": self.info.network,
            "mode": self.info.mode,
            "stratum_port": self.info.stratum_port,
            "uptime": round(time.time() - self.info.started, 3),
            "connections": len(self.pool.sessions()),
            "workers": snap.workers,
            "hashrate": snap.hashrate,
            "hashrate_text": {w: format_hashrate(h) for w, h in snap.hashrate.items()},
            "shares": {"accepted": snap.shares_accepted, "rejected": snap.shares_rejected},
            "best_share": snap.best_share,
            "blocks": {"found": snap.blocks_found, "rejected": snap.blocks_rejected},
            "last_share": snap.last_share,
            "bans": len(self.pool.bans.active(time.time())),  # how many; addresses: admins only
            "job": job_json(self.pool.current_job()),
        }

    def workers_json(self, limit: int = WORKERS_LIMIT, offset: int = 0) -> dict[str, Any]:
        """One `/api/workers` page: `limit` workers from `offset` in the order of
        `PoolStats.workers()` (busiest first), and how many there are in all."""
        return self.worker_pages.page(self.stats, limit, offset)

    def workers_page(self, limit: int = WORKERS_LIMIT, offset: int = 0) -> bytes:
        """`workers_json(limit, offset)` encoded, shared for WORKERS_TTL seconds."""
        return self.worker_pages.encoded(self.stats, limit, offset)

    def worker_json(self, name: str) -> dict[str, Any] | None:
        """One worker, or None when the pool has not seen it."""
        snap = self.stats.worker(name)
        return None if snap is None else worker_json(snap)

    async def blocks_json(self, limit: int) -> list[dict[str, Any]]:
        """The `/api/blocks` list from the ledger, newest first."""
        return [asdict(b) for b in await self.history.recent_blocks(limit)]

    def bans_json(self, now: float) -> list[dict[str, Any]]:
        """The `/api/bans` list: bans in force at `now`, the longest-running first."""
        return [ban_json(b, now) for b in sorted(self.pool.bans.active(now), key=_by_since)]


class WorkerPages:
    """`/api/workers` in pages, cheap enough for an anonymous client on a pool of 10,000
    workers: the ranking of every worker (`PoolStats.ranked`: one window each, no snapshot)
    is worked out at most once per `ttl` seconds and shared by every request and both
    listeners; a page snapshots only its own `limit` workers, and the last
    `WORKERS_PAGES_KEPT` encoded pages are kept for the same `ttl` (a dashboard polling the
    first page costs one encoding per `ttl`, whatever the number of pollers)."""

    def __init__(self, ttl: float = WORKERS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.ttl = ttl
        self._clock = clock
        self._at = -1e300
        self._names: list[str] = []
        self._encoded: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self.rankings = 0  # rankings worked out (for tests and the benchmark)

    def _ranked(self, stats: PoolStats) -> list[str]:
        now = self._clock()
        if now - self._at > self.ttl:
            self._names = stats.ranked()
            self._at = now
            self._encoded.clear()
            self.rankings += 1
        return self._names

    def page(self, stats: PoolStats, limit: int, offset: int) -> dict[str, Any]:
        """`limit` workers from `offset` in the shared ranking (a worker forgotten since
        the ranking was made is left out), with `total`, `limit`, `offset`."""
        names = self._ranked(stats)
        workers = []
        for name in names[offset : offset + limit]:
            snap = stats.worker(name)
            if snap is not None:
                workers.append(worker_json(snap))
        return {"total": len(names), "limit": limit, "offset": offset, "workers": workers}

    def encoded(self, stats: PoolStats, limit: int, offset: int) -> bytes:
        """`page(...)` as JSON bytes, kept while the ranking it was made from is."""
        self._ranked(stats)
        key = (limit, offset)
        body = self._encoded.get(key)
        if body is None:
            body = orjson.dumps(self.page(stats, limit, offset))
            self._encoded[key] = body
            while len(self._encoded) > WORKERS_PAGES_KEPT:
                self._encoded.popitem(last=False)
        return body


def ban_json(ban: BanEntry, now: float) -> dict[str, Any]:
    """A ban as JSON: address, reason, start and end (UNIX seconds), seconds left at `now`."""
    return {
        "ip": ban.ip,
        "reason": ban.reason,
        "since": ban.since,
        "until": ban.until,
        "remaining": round(max(0.0, ban.until - now), 3),
    }


def _by_since(ban: BanEntry) -> tuple[float, str]:
    return ban.since, ban.ip


def worker_json(w: WorkerSnapshot) -> dict[str, Any]:
    """A worker snapshot as JSON, with human-readable hashrates beside the numbers."""
    return {  # written out: dataclasses.asdict deep-copies field by field, 3x the time
        "name": w.name,
        "account": w.account,
        "hashrate": dict(w.hashrate),
        "shares_accepted": w.shares_accepted,
        "shares_rejected": dict(w.shares_rejected),
        "best_share": w.best_share,
        "last_share": w.last_share,
        "blocks_found": w.blocks_found,
        "hashrate_text": {k: format_hashrate(v) for k, v in w.hashrate.items()},
    }


def job_json(job: PoolJob | None) -> dict[str, Any] | None:
    """The work the pool hands out now: height, previous block, network difficulty."""
    if job is None:
        return None
    t = job.template
    return {
        "job_id": job.job_id,
        "height": t.height,
        "prev_hash": t.prev_hash[::-1].hex(),
        "bits": f"{t.bits:08x}",
        "network_difficulty": t.difficulty,
        "transactions": len(t.transactions),
        "coinbase_value": t.coinbase_value,
    }
