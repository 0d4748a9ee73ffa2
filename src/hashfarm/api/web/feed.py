"""What the dashboard keeps beside the pool's own statistics, and what it announces live.

`LiveFeed` looks at the `ReadModel` once per `interval` (1 s) from a task of its own, never
from the share path: the pool pays nothing per share for the dashboard, and the cost of a
look is one `PoolStats.pool()` snapshot plus a pass over the connected sessions, whatever the
number of browsers watching. Each look:

* samples the pool's hashrate into `HashrateHistory` (the 1 h / 24 h / 7 d chart): three
  fixed rings, so memory is bounded (816 points) however long the pool runs; the history is
  in memory only and starts empty when the pool starts;
* publishes `block` for each block submitted since the last look (and `alert` when the node
  refused one), `worker` when worker names connect that were not connected before (the
  sessions are looked through every 5 s, so a busy pool's comings and goings make one
  event), `tip` when the template's height changes;
* on a new tip, asks the node (in the background) for the epoch's first and last headers
  and projects the next retarget with `hashfarm.economics.retarget`;
* for each block the node accepted, works out its luck in the background (`LuckBook`): the
  block's network difficulty over the accepted share difficulty the pool recorded since the
  previous accepted block (100 %: as expected; 200 %: found in half the expected work),
  summed by the ledger itself (read-only connection, on the `shares (time)` index).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Protocol

from hashfarm.api.live import LiveHub
from hashfarm.api.readmodel import ReadModel
from hashfarm.chain.networks import get_network
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.economics.retarget import project_retarget
from hashfarm.errors import HashfarmError
from hashfarm.node.template import Template
from hashfarm.pool.records import BlockRecord

log = logging.getLogger("hashfarm.api.web.feed")

INTERVAL = 1.0  # seconds between looks at the pool
NODE_TIMEOUT = 10.0  # seconds the retarget projection may wait for the node
WORKER_NAMES_SHOWN = 20  # names one `worker` event lists (the count says how many in all)
WORKER_EVENT_EVERY = 5.0  # seconds between looks through the sessions (and `worker` events)
POOL_DOC_TTL = 1.0  # seconds the `/api/pool` document is shared between page fragments
BLOCKS_TTL = 1.0  # seconds the ledger's newest blocks are shared between page views
BLOCKS_READ_MIN = 50  # the fewest blocks one ledger read takes (the block list's default)
BUSIEST_TTL = 2.0  # seconds the busiest-workers list is shared between page views
LUCK_KEPT = 1000  # blocks whose luck is remembered (the ledger's newest)
LUCK_SCAN = 100  # ledger blocks read to find each block's predecessor
LUCK_AT_START = 10  # newest accepted blocks whose luck is worked out when the pool starts
LUCK_TRIES = 30  # looks a found block may wait to appear in the ledger before its luck is dropped

# chart range -> (seconds between points, points kept, PoolStats window sampled)
RANGES: dict[str, tuple[float, int, str]] = {
    "1h": (10.0, 360, "1m"),
    "24h": (300.0, 288, "5m"),
    "7d": (3600.0, 168, "1h"),
}


class NodeHeaders(Protocol):
    """The node reads the feed makes (`hashfarm.node.rpc.RPCClient` has them)."""

    async def getblockhash(self, height: int) -> str: ...
    async def getblockheader(self, block_hash: str, verbose: bool = True) -> Any: ...


class LuckBook:
    """Luck per block hash (bounded), summed from the ledger at `url` on a thread of its own."""

    def __init__(self, url: Callable[[], str | None]) -> None:
        self._url = url
        self.values: OrderedDict[str, float] = OrderedDict()
        self._thread: ThreadPoolExecutor | None = None
        self._sql: Any = None  # hashfarm.accounting.store.SqlStore, opened on first use

    def get(self, block_hash: str) -> float | None:
        """The block's luck, or None when it is not known (yet)."""
        return self.values.get(block_hash)

    async def work_between(self, after: float, until: float) -> float | None:
        """Accepted share difficulty recorded in (after, until]; None without a ledger."""
        url = self._url()
        if url is None:
            return None
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="web-luck")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._sum, url, after, until)

    def _sum(self, url: str, after: float, until: float) -> float:
        if self._sql is None:
            from hashfarm.accounting.statements import connect_readonly

            self._sql = connect_readonly(url)
        rows = self._sql.q(
            "SELECT COALESCE(SUM(difficulty), 0) FROM shares "
            "WHERE accepted AND time > ? AND time <= ?",
            (after, until),
        )
        if self._sql.dialect == "postgresql":
            self._sql.conn.rollback()  # end the read-only snapshot: the next sum sees new rows
        return float(rows[0][0])

    def remember(self, block_hash: str, luck: float) -> None:
        self.values[block_hash] = luck
        while len(self.values) > LUCK_KEPT:
            self.values.popitem(last=False)

    def close(self) -> None:
        """Close the connection and the thread."""
        if self._thread is not None:
            sql, self._sql = self._sql, None
            if sql is not None:
                self._thread.submit(sql.conn.close).result()
            self._thread.shutdown(wait=True)
            self._thread = None


class HashrateHistory:
    """The pool's hashrate sampled into one bounded ring per chart range."""

    def __init__(self) -> None:
        self._rings = {name: deque[tuple[float, float]](maxlen=n)
                       for name, (_, n, _) in RANGES.items()}  # fmt: skip
        self._slots = dict.fromkeys(RANGES, -1)

    def sample(self, now: float, hashrate: Mapping[str, float]) -> None:
        """Record `hashrate` (by PoolStats window) at `now` into each ring whose step began."""
        for name, (step, _, window) in RANGES.items():
            slot = int(now // step)
            if slot != self._slots[name]:
                self._slots[name] = slot
                self._rings[name].append((round(now, 3), hashrate[window]))

    def series(self, name: str) -> list[tuple[float, float]]:
        """(UNIX seconds, H/s) points of range `name`, oldest first; KeyError if unknown."""
        return list(self._rings[name])


class LiveFeed:
    """Looks at the pool every `interval` seconds; publishes changes to `hub`."""

    def __init__(self, model: Callable[[], ReadModel], hub: LiveHub, *,
                 ledger_url: Callable[[], str | None] = lambda: None,
                 interval: float = INTERVAL,
                 worker_every: float = WORKER_EVENT_EVERY) -> None:  # fmt: skip
        self._model = model
        self.hub = hub
        self.interval = interval
        self.worker_every = worker_every
        self.history = HashrateHistory()
        self.retarget: dict[str, Any] | None = None  # the latest projection (see `_retarget`)
        self.tip_height: int | None = None  # the node's tip (the template's height - 1)
        self.network_difficulty: float | None = None  # what the next block must meet
        self.luck = LuckBook(ledger_url)  # block hash -> expected work / work done
        self._luck_wanted: dict[str, int] = {}  # block hash -> looks it has waited for its luck
        self._luck_task: asyncio.Task[None] | None = None
        self.looks = 0
        self._submitted: int | None = None  # blocks submitted at the last look
        self._workers: set[str] | None = None  # worker names connected at the last look
        self._workers_scanned = -1e300  # when the sessions were last looked through
        self._pool_doc: tuple[float, dict[str, Any]] = (-1e300, {})
        self._busiest: tuple[float, int, list[dict[str, Any]]] = (-1e300, 0, [])
        self._recent: tuple[float, int, list[dict[str, Any]]] = (-1e300, 0, [])
        self._reading: tuple[int, asyncio.Future[list[dict[str, Any]]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._projecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start looking (on the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="web-feed")

    async def stop(self) -> None:
        """Stop looking."""
        for task in (self._task, self._projecting, self._luck_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._projecting = self._luck_task = None
        await asyncio.get_running_loop().run_in_executor(None, self.luck.close)

    async def _run(self) -> None:
        while True:
            try:
                self.look(time.time())
            except Exception:  # the dashboard must never take the pool down
                log.exception("web feed: a look at the pool failed")
            await asyncio.sleep(self.interval)

    def look(self, now: float) -> None:
        """One look: sample, then publish what changed since the previous look."""
        model = self._model()
        snap = model.stats.pool()
        self.history.sample(now, snap.hashrate)
        self._blocks(model, snap.blocks_found + snap.blocks_rejected)
        if time.monotonic() - self._workers_scanned >= self.worker_every:
            self._new_workers(model)  # a pass over every session: every worker_every seconds
        self._tip(model)
        if self.looks == 0 or self._luck_wanted:
            self._work_out_luck(model, at_start=self.looks == 0)
        self.looks += 1

    def _blocks(self, model: ReadModel, submitted: int) -> None:
        before, self._submitted = self._submitted, submitted
        if before is None or submitted <= before:
            return
        self._recent = (-1e300, 0, [])  # the next page view reads the ledger again
        for rec in reversed(model.stats.blocks()[: submitted - before]):
            self.hub.publish("block", block_event(rec))
            if rec.accepted_by_node:
                self._luck_wanted[rec.hash_hex] = 0
            if not rec.accepted_by_node:
                self.hub.publish("alert", {
                    "level": "warning",
                    "message": f"the node refused block {rec.height} found by "
                               f"{rec.finder_worker}: {rec.node_verdict}",
                })  # fmt: skip

    def _new_workers(self, model: ReadModel) -> None:
        self._workers_scanned = time.monotonic()
        names: set[str] = set()
        for session in model.pool.sessions():
            names.update(getattr(session, "workers", ()))
        before, self._workers = self._workers, names
        if before is None:
            return
        new = names - before
        if new:
            shown = sorted(new)[:WORKER_NAMES_SHOWN]
            self.hub.publish("worker", {"new": shown, "new_count": len(new),
                                        "connected": len(names)})  # fmt: skip

    def _tip(self, model: ReadModel) -> None:
        template = current_template(model)
        if template is None:
            return
        height = template.height - 1
        if height == self.tip_height:
            return
        first = self.tip_height is None
        self.tip_height = height
        self.network_difficulty = template.difficulty
        if not first:
            self.hub.publish("tip", {"height": height,
                                     "network_difficulty": template.difficulty})  # fmt: skip
        if self._projecting is None or self._projecting.done():
            prev = template.prev_hash[::-1].hex()
            self._projecting = asyncio.ensure_future(self._retarget(model, height, prev))

    async def _retarget(self, model: ReadModel, height: int, tip_hash: str) -> None:
        """Project the next retarget from the node's headers into `self.retarget`."""
        network = get_network(model.info.network)
        doc: dict[str, Any] = {"height": height, "retarget_interval": network.retarget_interval}
        node: NodeHeaders | None = getattr(model.pool, "rpc", None)
        if network.no_retargeting:
            self.retarget = doc | {"note": f"difficulty never changes on {network.name}"}
            return
        if node is None:
            self.retarget = doc | {"note": "no node to read the epoch's headers from"}
            return
        try:
            async with asyncio.timeout(NODE_TIMEOUT):
                tip = await node.getblockheader(tip_hash)
                start = height - height % network.retarget_interval
                first = await node.getblockheader(await node.getblockhash(start))
            projection = project_retarget(
                int(tip["height"]),
                header_bits(tip["bits"]),
                int(first["time"]),
                int(tip["time"]),
                network,
            )
        except (HashfarmError, TimeoutError, KeyError, ValueError, TypeError) as exc:
            self.retarget = doc | {"note": f"no projection yet: {exc}"}
            return
        self.retarget = doc | asdict(projection)

    async def recent_blocks(self, model: ReadModel, limit: int) -> list[dict[str, Any]]:
        """`model.blocks_json(limit)`, read at most once a second for every viewer: when a
        block makes every open page refresh at once, the ledger is read once, not per page."""
        at, size, docs = self._recent
        if time.monotonic() - at <= BLOCKS_TTL and limit <= size:
            return docs[:limit]
        reading = self._reading
        if reading is None or reading[0] < limit:
            size = max(limit, BLOCKS_READ_MIN)
            reading = (size, asyncio.ensure_future(model.blocks_json(size)))
            self._reading = reading
        size, future = reading
        try:
            docs = await asyncio.shield(future)  # one viewer leaving never cancels the read
        finally:
            if self._reading is reading and future.done():
                self._reading = None
        self._recent = (time.monotonic(), size, docs)
        return docs[:limit]

    def pool_doc(self, model: ReadModel) -> dict[str, Any]:
        """`model.pool_json()` (the `/api/pool` document), shared for POOL_DOC_TTL seconds
        between the fragments every open page asks for after an event."""
        at, doc = self._pool_doc
        now = time.monotonic()
        if now - at > POOL_DOC_TTL:
            doc = model.pool_json()
            self._pool_doc = (now, doc)
        return doc

    def busiest(self, model: ReadModel, n: int) -> list[dict[str, Any]]:
        """The first `n` entries of `/api/workers` (its first page of `n`: the ranking that
        route shares for 2 s, one window per worker, then n snapshots), kept BUSIEST_TTL
        seconds so many viewers cost one computation."""
        at, count, workers = self._busiest
        now = time.monotonic()
        if now - at > BUSIEST_TTL or count != n:
            workers = model.workers_json(n)["workers"]
            self._busiest = (now, n, workers)
        return workers

    def _work_out_luck(self, model: ReadModel, *, at_start: bool) -> None:
        if self._luck_task is not None and not self._luck_task.done():
            return  # the next look tries again
        wanted, self._luck_wanted = self._luck_wanted, {}
        self._luck_task = asyncio.ensure_future(self._luck(model, wanted, at_start))

    async def _luck(self, model: ReadModel, wanted: dict[str, int], at_start: bool) -> None:
        """Work out the luck of the `wanted` blocks (and at start the newest few); a block
        the ledger does not list yet is tried again at the next looks (LUCK_TRIES)."""
        try:
            recent = await model.history.recent_blocks(LUCK_SCAN)
            blocks = [b for b in recent if b.accepted_by_node]
            if at_start:
                wanted |= {b.hash_hex: 0 for b in blocks[:LUCK_AT_START]}
            listed = {b.hash_hex for b in blocks}
            for block_hash, tries in wanted.items():
                if block_hash not in listed and tries < LUCK_TRIES:
                    self._luck_wanted[block_hash] = tries + 1
            node: NodeHeaders | None = getattr(model.pool, "rpc", None)
            for i, block in enumerate(blocks):
                if block.hash_hex not in wanted or self.luck.get(block.hash_hex) is not None:
                    continue
                if i + 1 < len(blocks):
                    after = blocks[i + 1].time
                elif len(recent) < LUCK_SCAN:
                    after = 0.0  # the first block the pool found: its work since the start
                else:
                    continue  # its predecessor is older than the blocks read: unknown
                work = await self.luck.work_between(after, block.time)
                difficulty = await _block_difficulty(node, block.hash_hex, model)
                if work and difficulty:
                    self.luck.remember(block.hash_hex, difficulty / work)
        except Exception:  # luck is a nicety: a failure is logged, never raised
            log.exception("web feed: working out block luck failed")

    def block_view(self, block: dict[str, Any]) -> dict[str, Any]:
        """A `/api/blocks` entry plus `confirmations` counted from the tip the pool works on
        (None for a block the node refused) and `luck` (None until known)."""
        confirmations = None
        tip = self.tip_height
        if block["accepted_by_node"] and tip is not None and tip >= block["height"]:
            confirmations = tip - block["height"] + 1
        return block | {"confirmations": confirmations, "luck": self.luck.get(block["hash_hex"])}


async def _block_difficulty(node: NodeHeaders | None, block_hash: str,
                            model: ReadModel) -> float | None:  # fmt: skip
    """The network difficulty the block met (its header's bits), else the current job's."""
    if node is not None:
        with contextlib.suppress(HashfarmError, TimeoutError, KeyError, ValueError, TypeError):
            async with asyncio.timeout(NODE_TIMEOUT):
                header = await node.getblockheader(block_hash)
            return bits_to_difficulty(header_bits(header["bits"]))
    job = model.pool.current_job()
    return job.template.difficulty if job is not None else None


def header_bits(value: str | int) -> int:
    """A header's `bits` as the node gives it: hex text (Core) or a number (bcoin)."""
    return value if isinstance(value, int) else int(value, 16)


def current_template(model: ReadModel) -> Template | None:
    """The node's newest template as the pool holds it: from the pool's job book (which has
    one even when no miner is connected: solo jobs exist per connected payout address only),
    else from the current job."""
    jobs = getattr(model.pool, "jobs", None)  # hashfarm.pool.service.Pool.jobs (JobBook)
    template = getattr(jobs, "template", None)
    if isinstance(template, Template):
        return template
    job = model.pool.current_job()
    return None if job is None else job.template


def block_event(rec: BlockRecord) -> dict[str, Any]:
    """A submitted block as the `block` event carries it (the `/api/blocks` fields)."""
    return asdict(rec)
