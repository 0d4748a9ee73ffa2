"""Winning shares become blocks: assemble, `submitblock`, move the miners, confirm, record.

Nothing slow stands between the first candidate on a tip and the node: the block's bytes are
assembled synchronously from parts prepared with the template (its transactions are
concatenated once per template) and the `submitblock` request is the first await. Which
candidates go, and when, is `pool/candidates.py`'s policy: one at a time per previous block,
siblings dropped once the node took one, stale ones never ahead of the tip's. When the node
takes a block the miners get work on it at once; confirmation (`getblockhash`), the ledger
and the observers come after. A rejected block is logged at ERROR with the node's reason.

While the node is away one retry loop (capped backoff, one `submitblock` at a time, logged
once per outage) delivers what waits, each candidate for at most `blocks.submit_patience`;
at stop, what could not be delivered within `blocks.stop_drain` is logged by hash, with the
hex of each height's first candidate, so an operator can submit it by hand.

Proving the coinbase at start uses the same assembly: a block with the pool's real coinbase
layout goes to `getblocktemplate` in proposal mode (BIP 23: the node checks everything but
proof of work), and the pool refuses to start unless the node finds nothing wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from hashfarm.chain.serialize import encode_compact_size
from hashfarm.errors import HashfarmError, NodeError, NodeUnavailable
from hashfarm.pool.candidates import (
    NODE_AWAY,
    STOPPED,
    UNANSWERED,
    CandidateQueue,
    Dropped,
    Pending,
    Verdict,
)
from hashfarm.pool.jobs import PoolJob
from hashfarm.pool.records import BlockRecord, PoolObserver, ShareLedger
from hashfarm.pool.settings import BlockSettings
from hashfarm.pool.tipwatch import NodeRPC
from hashfarm.stratum.work import serialize_header

log = logging.getLogger(__name__)

RETRY_FIRST = 0.25  # seconds before the first retry once the node stopped answering
CONFIRM_TRIES = 20  # getblockhash attempts (50 ms apart) before a block counts as not in chain
ORPHANED = "not in the active chain (valid, but another block at this height won)"
FOUND_KEPT = 1000  # submitted blocks kept in memory for found_blocks() (the ledger keeps all)
SUMMARY_EVERY = 10.0  # seconds between log lines counting candidates not submitted
RECORD_GRACE = 5.0  # seconds stop() waits for block records to reach the ledger after the drain
RECORDING_MAX = 1000  # unsent candidates' records awaiting the ledger at once (then: counted)
MANUAL = (NODE_AWAY, STOPPED, UNANSWERED)  # drops an operator should see, hash by hash


@dataclass(frozen=True, slots=True)
class Found:
    """A share that met the network target, with what the block record needs."""

    job: PoolJob
    header: bytes
    block_hash: bytes  # internal order
    extranonce: bytes  # extranonce1 + extranonce2
    worker: str
    account: str

    @property
    def hash_hex(self) -> str:
        """Display-order hash."""
        return self.block_hash[::-1].hex()


def assemble_block(job: PoolJob, header: bytes, extranonce: bytes) -> bytes:
    """The full block (witness form): header, tx count, coinbase, the template's txs."""
    tpl = job.template
    coinbase = job.coinbase.transaction(extranonce).serialize(witness=True)
    return b"".join(
        (
            header,
            encode_compact_size(1 + len(tpl.transactions)),
            coinbase,
            *(tx.data for tx in tpl.transactions),
        )
    )


def block_hex(job: PoolJob, header: bytes, extranonce: bytes) -> str:
    """`assemble_block(...).hex()` without hexing the template's transactions again: the
    node's own hex is kept with the template, so a winning share costs one coinbase."""
    tpl = job.template
    coinbase = job.coinbase.transaction(extranonce).serialize(witness=True)
    head = header + encode_compact_size(1 + len(tpl.transactions)) + coinbase
    return head.hex() + tpl.tail_hex()


async def prove_coinbase(rpc: NodeRPC, job: PoolJob, extranonce2_size: int) -> None:
    """Ask the node to check a block built on `job` (proposal mode); raise if it objects."""
    extranonce = bytes(4 + extranonce2_size)
    root = job.work.merkle_root(extranonce[:4], extranonce[4:])
    header = serialize_header(
        job.work.version, job.template.prev_hash, root, job.work.time, job.work.bits, 0
    )
    data = block_hex(job, header, extranonce)
    verdict = await rpc.proposeblock(data)
    if verdict is None:
        log.info("coinbase proven: the node accepts a block proposal built on job %s", job.job_id)
        return
    if verdict in ("inconclusive-not-best-prevblk", "bad-prevblk"):
        # Core answers the former when the proposal's parent is no longer the tip; bcoin
        # answers the latter (seen when a block arrived during the check): retry on a new tip
        raise NodeError(f"coinbase proof inconclusive ({verdict}): the tip moved; retry")
    raise NodeError(f"the node rejects the pool's block layout: {verdict}")


class BlockSubmitter:
    """Submits block candidates under the queue policy, confirms them, records every one."""

    def __init__(
        self,
        rpc: NodeRPC,
        ledger: ShareLedger,
        observers: Sequence[PoolObserver],
        settings: BlockSettings | None = None,
        *,
        retry_max: float = 5.0,
        tip: Callable[[], bytes | None] = lambda: None,
        on_accepted: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.rpc = rpc
        self.ledger = ledger
        self.observers = observers
        self.settings = settings or BlockSettings()
        self.retry_max = retry_max  # seconds: cap of the retry loop's backoff
        self.tip = tip  # previous-block hash the pool's current jobs build on
        self.on_accepted = on_accepted  # given the hash: fetch work on it without waiting
        s = self.settings
        self.queue: CandidateQueue[Found] = CandidateQueue(
            s.queue_per_height, s.queue_max, s.submit_patience
        )
        self.found: deque[BlockRecord] = deque(maxlen=FOUND_KEPT)
        self.not_submitted: Counter[str] = Counter()  # reason -> candidates never sent
        self.submit_calls = 0  # submitblock calls started (each may retry inside the client)
        self.last_submit_latency = 0.0  # seconds from the share to the request being sent
        self._sending: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # conclusions and ledger writes
        self._retrying: asyncio.Task[None] | None = None
        self._away_logged = False
        self._summary: Counter[str] = Counter()
        self._recording = 0  # records of unsent candidates on their way to the ledger
        self._summary_at = time.monotonic()

    # -- entry point ---------------------------------------------------------------------

    def submit(self, found: Found, started: float) -> None:
        """A share met the network target: send it now, queue it or record it as not sent."""
        self._follow_tip()
        decision = self.queue.offer(found, found.job.template.prev_hash, time.monotonic())
        if isinstance(decision, Pending):
            raw_hex = block_hex(found.job, found.header, found.extranonce)
            self._spawn(self._deliver(decision, raw_hex, started), self._sending)
        elif isinstance(decision, Dropped):
            self._drop([decision])
        elif self.queue.away_since is not None:
            self._ensure_retry()

    # -- sending -------------------------------------------------------------------------

    async def _deliver(self, pending: Pending[Found], raw_hex: str, started: float) -> None:
        self.last_submit_latency = time.perf_counter() - started
        verdict, kind = await self._send(pending.item, raw_hex)
        del raw_hex  # a mainnet block's hex is ~2 MB: not kept while confirming
        self._settle(pending, kind)
        if kind is not Verdict.AWAY:  # else it waits in the queue for the retry loop
            self._spawn(self._conclude(pending.item, verdict), self._tasks)

    async def _send(self, found: Found, raw_hex: str) -> tuple[str | None, Verdict]:
        self.submit_calls += 1
        try:
            verdict = await self.rpc.submitblock(raw_hex)
        except NodeUnavailable as exc:
            if not self._away_logged:  # once per outage, however many candidates wait
                self._away_logged = True
                log.error(
                    "node unreachable for block %s (%s): candidates wait, one retry at a "
                    "time, each up to %.0f s",
                    found.hash_hex,
                    exc,
                    self.settings.submit_patience,
                )
            return f"submitblock failed: {exc}", Verdict.AWAY
        except NodeError as exc:
            return f"submitblock failed: {exc}", Verdict.REJECTED
        if self._away_logged:
            self._away_logged = False
            log.warning("node answers submitblock again: %d candidates waiting", self.queue.waiting)
        taken = verdict in (None, "duplicate", "inconclusive")
        return verdict, Verdict.TAKEN if taken else Verdict.REJECTED

    def _settle(self, pending: Pending[Found], kind: Verdict) -> None:
        """Tell the policy; send what it frees, record what it drops, retry if away."""
        self._follow_tip()
        ready, dropped = self.queue.done(pending, kind, time.monotonic())
        self._drop(dropped)
        for nxt in ready:
            found = nxt.item
            raw_hex = block_hex(found.job, found.header, found.extranonce)
            self._spawn(self._deliver(nxt, raw_hex, time.perf_counter()), self._sending)
        if kind is Verdict.AWAY:
            self._ensure_retry()

    def _ensure_retry(self) -> None:
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.ensure_future(self._retry_loop())

    async def _retry_loop(self) -> None:
        """The one loop that talks to an away node: one candidate at a time, capped backoff."""
        delay = RETRY_FIRST
        while self.queue.away_since is not None:
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)
            self._follow_tip()
            pending, dropped = self.queue.probe(time.monotonic())
            self._drop(dropped)
            if pending is None:
                continue  # another send is still out, or nothing is left (the loop ends)
            found = pending.item
            raw_hex = block_hex(found.job, found.header, found.extranonce)
            verdict, kind = await self._send(found, raw_hex)
            del raw_hex
            self._settle(pending, kind)
            if kind is not Verdict.AWAY:
                self._spawn(self._conclude(found, verdict), self._tasks)

    # -- after the node answered ---------------------------------------------------------

    async def _conclude(self, found: Found, verdict: str | None) -> None:
        """Move the miners first (the node holds the block), then confirm and record."""
        on_tip = found.job.template.prev_hash == self.tip()  # a stale block never is the tip
        if verdict in (None, "duplicate") and on_tip and self.on_accepted is not None:
            try:
                await self.on_accepted(found.hash_hex)
            except Exception:  # new work comes from the tip watcher anyway
                log.exception("fetching work on block %s failed", found.hash_hex)
        accepted = await self._confirm(found, verdict)
        record = self._record_of(found, accepted, None if accepted else (verdict or ORPHANED))
        self._report(record)
        await self._record(record, observe=True)

    async def _confirm(self, found: Found, verdict: str | None) -> bool:
        """The node said yes (or duplicate): check the block is its chain's at that height."""
        if verdict not in (None, "duplicate", "inconclusive"):
            return False
        for _ in range(CONFIRM_TRIES):
            try:
                if await self.rpc.getblockhash(found.job.template.height) == found.hash_hex:
                    return True
            except NodeError:
                pass  # not there yet, or the node hiccups: ask again
            await asyncio.sleep(0.05)
        return False

    def _record_of(self, found: Found, accepted: bool, verdict: str | None) -> BlockRecord:
        return BlockRecord(
            height=found.job.template.height,
            hash_hex=found.hash_hex,
            reward_sats=found.job.template.coinbase_value,
            finder_worker=found.worker,
            finder_account=found.account,
            time=time.time(),
            accepted_by_node=accepted,
            node_verdict=verdict,
        )

    def _report(self, rec: BlockRecord) -> None:
        self.found.append(rec)
        if rec.accepted_by_node:
            log.warning(
                "BLOCK FOUND height %d %s by %s (%d sats)",
                rec.height,
                rec.hash_hex,
                rec.finder_worker,
                rec.reward_sats,
            )
            return
        orphaned = rec.node_verdict == ORPHANED  # valid, but a sibling won the race: no alarm
        log.log(
            logging.WARNING if orphaned else logging.ERROR,
            "BLOCK %s height %d %s by %s: %s",
            "ORPHANED" if orphaned else "REJECTED",
            rec.height,
            rec.hash_hex,
            rec.finder_worker,
            rec.node_verdict,
        )

    async def _record(self, rec: BlockRecord, *, observe: bool) -> None:
        try:
            await self.ledger.record_block(rec)
        except HashfarmError as exc:
            log.error("block %s not recorded in the ledger: %s", rec.hash_hex, exc)
        if observe:  # observers count submitted blocks only (PoolObserver.on_block)
            for observer in self.observers:
                observer.on_block(rec)

    # -- candidates never sent -----------------------------------------------------------

    def _follow_tip(self) -> None:
        self._drop(self.queue.set_tip(self.tip()))

    def _drop(self, dropped: list[Dropped[Found]], *, hex_for: set[bytes] | None = None) -> None:
        """Record each with its reason (the ledger only); log the ones an operator must see."""
        for d in dropped:
            self.not_submitted[d.reason] += 1
            if self._recording < RECORDING_MAX:  # the share itself carries the hash anyway
                self._recording += 1
                self._spawn(self._record_dropped(self._record_of(d.item, False, d.reason)))
            else:
                self._summary["not written to the ledger (its backlog is full)"] += 1
            if d.reason in MANUAL:
                self._log_manual(d, hex_for)
            else:
                self._summary[d.reason] += 1
        now = time.monotonic()
        if self._summary and now - self._summary_at >= SUMMARY_EVERY:
            log.info(
                "block candidates not submitted in the last %.0f s: %s",
                now - self._summary_at,
                "; ".join(f"{n} {reason}" for reason, n in self._summary.items()),
            )
            self._summary.clear()
            self._summary_at = now

    async def _record_dropped(self, rec: BlockRecord) -> None:
        try:
            await self._record(rec, observe=False)
        finally:
            self._recording -= 1

    def _log_manual(self, d: Dropped[Found], hex_for: set[bytes] | None) -> None:
        found = d.item
        log.error(
            "BLOCK NOT SUBMITTED height %d %s by %s (%s)",
            found.job.template.height,
            found.hash_hex,
            found.worker,
            d.reason,
        )
        prev = found.job.template.prev_hash
        if hex_for is not None and prev not in hex_for:  # one per height: logs stay bounded
            hex_for.add(prev)
            raw_hex = block_hex(found.job, found.header, found.extranonce)
            log.error("to submit block %s by hand: submitblock %s", found.hash_hex, raw_hex)

    # -- life cycle ----------------------------------------------------------------------

    def _spawn(
        self,
        coro: Coroutine[Any, Any, None],
        into: set[asyncio.Task[None]] | None = None,
    ) -> None:
        tasks = self._tasks if into is None else into
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def busy(self) -> bool:
        """Whether anything is waiting, with the node, or still being recorded."""
        return bool(self.queue.waiting or self._live())

    def _live(self) -> set[asyncio.Task[None]]:
        live = self._sending | self._tasks
        if self._retrying is not None and not self._retrying.done():
            live.add(self._retrying)
        return live

    async def drain(self) -> None:
        """At stop: give pending blocks `blocks.stop_drain` seconds, then log and record
        what was not delivered; bounded however the node behaves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.stop_drain
        while (live := self._live()) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(live, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        doomed = [*self._sending, *([self._retrying] if self._retrying else [])]
        for task in doomed:
            task.cancel()
        for task in doomed:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._drop(self.queue.drain(), hex_for=set())
        if self._tasks:  # confirmations and ledger writes: a little longer, then give up
            _, late = await asyncio.wait(list(self._tasks), timeout=RECORD_GRACE)
            for task in late:
                task.cancel()
            if late:
                log.error("%d block records not written at stop (the ledger is slow)", len(late))
