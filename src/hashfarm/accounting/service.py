"""The crediting service: follow the node and turn the pool's found blocks into credits.

`CreditingService.step()` does one pass over the database the pool writes:

1. note the operator's scheme (a change is a switch, effective at the next found block);
2. track every block the pool recorded as accepted by the node whose finding share is in the
   ledger (a block whose share is not committed yet waits for the next pass);
3. read a consistent view of the node's active chain: the tip, then the hash at the height of
   every block not yet final, then the tip again; if the tip moved meanwhile the view is read
   again (a decision is never made on a chain that changed under it);
4. `lifecycle.advance` every open block on that view and write the event it calls for
   (`crediting`): first seen on the chain -> credits posted (immature); 100 confirmations ->
   spendable (credited); gone from its height -> orphaned, credits reversed;
5. price the shares of PPS/FPPS epochs not priced yet, in batches, each at the terms of the
   job it answered (`acct_job_terms`, written by the pool), and credit them from the reserve
   (`pps:<first>-<last>`); report the reserve against its warning threshold.

Every scheme is credited: SOLO/PROP/PPLNS from the shares; PPS/FPPS blocks' rewards go to
the reserve while their shares are priced one by one; a TIDES block posts the coinbase plan
of the job it was found on (`acct_coinbase_plans`): the outputs its coinbase paid, held dust.

Every event is one database transaction keyed by the ledger's idempotency keys, so a crash
anywhere and any number of replays credit each block exactly once. `step(budget=n)` stops
after n events (the tests use it to cut a pass anywhere, as a crash would). `run()` repeats
passes every `poll_interval` seconds until stopped; a node or database outage is logged and
retried at the next pass.

accounting does not import `node`: the node is anything with the `ChainView` methods
(`hashfarm.node.rpc.RPCClient` is one; `cli` wires it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hashfarm.accounting.crediting import (
    PPS_BATCH,
    OpenBlock,
    PpsWait,
    format_spec,
    next_pps_batch,
    note_scheme,
    open_blocks,
    post_found,
    post_mature,
    post_orphan,
    post_pps_batch,
    reserve_balances,
    set_confirmations,
    track,
    untracked_blocks,
)
from hashfarm.accounting.ledger import AccountingError, ReserveStatus
from hashfarm.accounting.lifecycle import BlockState, TrackedBlock, advance
from hashfarm.accounting.schemes import Scheme
from hashfarm.accounting.store import AccountingStore
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.errors import HashfarmError, NodeError, RPCError

log = logging.getLogger("hashfarm.accounting.service")

SNAPSHOT_TRIES = 5  # reads of the chain view before a pass gives up (the tip kept moving)
STALL_WARNING_S = 120.0  # a share unpriced for longer than this is logged at every pass


class ChainView(Protocol):
    """What the service asks the node (bitcoind's JSON-RPC names; RPCClient has them)."""

    async def getblockcount(self) -> int:
        """Height of the active chain's tip."""
        ...

    async def getblockhash(self, height: int) -> str:
        """Hash of the active chain's block at `height` (display hex)."""
        ...

    async def getblockheader(self, block_hash: str, verbose: bool = True) -> Any:
        """The header as JSON: `bits` (hex string in Core, integer in bcoin) is used."""
        ...


@dataclass(frozen=True, slots=True)
class ChainSnapshot:
    """The active chain at one moment: its tip and the hashes at the heights asked for."""

    tip: int
    hashes: dict[int, str]

    def hash_at(self, height: int) -> str | None:
        """The hash at `height`, None above the tip."""
        return self.hashes.get(height) if height <= self.tip else None


@dataclass
class StepReport:
    """What one pass did (counts of events written)."""

    tip: int | None = None
    tracked: int = 0
    posted: int = 0  # found transactions (credits, immature)
    credited: int = 0  # matured and made spendable
    orphaned: int = 0
    reversed: int = 0  # orphans whose posted credits were reversed
    waiting: list[str] = field(default_factory=list)  # blocks whose finding share is missing
    failed: list[str] = field(default_factory=list)  # blocks the ledger refused (logged)
    complete: bool = True  # False: the budget or a moving chain cut the pass short
    priced: int = 0  # PPS/FPPS shares priced
    pps_credited: int = 0  # sats credited for them
    unpriced: PpsWait | None = None  # pricing waits before this share (its job's terms)
    skipped: int = 0  # PPS-epoch shares from before any job's terms were recorded: unpaid
    reserve: ReserveStatus | None = None  # the PPS/FPPS reserve after the pass


def header_difficulty(header: Any) -> float:
    """Network difficulty from a header's `bits` (Core: hex string; bcoin: integer)."""
    bits = header["bits"] if isinstance(header, dict) else None
    if isinstance(bits, str):
        bits = int(bits, 16)
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise NodeError(f"block header without usable bits: {header!r}")
    return bits_to_difficulty(bits)


class CreditingService:
    """Credits every scheme's blocks and PPS shares from the pool's ledger, following the node."""

    def __init__(
        self,
        store: AccountingStore,
        node: ChainView,
        scheme: Scheme,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 5.0,
        reserve_warning_sats: int = 0,
        pps_batch: int = PPS_BATCH,
    ) -> None:
        if pps_batch < 1:
            raise ValueError("pps_batch must be at least 1")
        self.store = store
        self.node = node
        self.spec = format_spec(scheme)
        self.clock = clock
        self.poll_interval = poll_interval
        self.reserve_warning_sats = reserve_warning_sats
        self.pps_batch = pps_batch

    async def step(self, budget: int | None = None) -> StepReport:
        """One pass (see the module docstring); at most `budget` events when given."""
        report = StepReport()
        left = [budget]

        def spend() -> bool:
            if left[0] is None:
                return True
            if left[0] <= 0:
                report.complete = False
                return False
            left[0] -= 1
            return True

        now = self.clock()
        if not await self.store.call(lambda s: s.pool_tables_present()):
            raise HashfarmError("no pool tables (shares, blocks) in this database: run the pool")
        if not spend():
            return report
        before = await self.store.call(lambda s: note_scheme(s, self.spec, now))
        if isinstance(before, str):  # two services with different schemes would flip-flop
            log.warning(
                "scheme switch noted: %s -> %s, effective at the next block found",
                before,
                self.spec,
            )
        for new in await self.store.call(untracked_blocks):
            if new.found_share_id is None:
                report.waiting.append(new.hash_hex)
                continue
            if not spend():
                return report
            await self.store.call(lambda s, b=new: track(s, b, now))  # type: ignore[misc]
            report.tracked += 1
        blocks = await self.store.call(open_blocks)
        snap = await self.snapshot({b.height for b in blocks})
        if snap is None:
            report.complete = False
            log.warning("the node's tip kept moving while it was read; next pass")
            return report
        report.tip = snap.tip
        unchanged: list[tuple[str, int]] = []
        for block in blocks:
            try:
                if not await self._advance(block, snap, now, spend, report, unchanged):
                    return report
            except AccountingError as exc:  # this block's books refuse: the others go on
                report.failed.append(block.hash_hex)
                log.error("block %s not credited: %s", block.hash_hex, exc)
        await self.store.call(lambda s: set_confirmations(s, unchanged))
        if not await self._price(now, spend, report):
            return report
        reserve, immature, owed = await self.store.call(reserve_balances)
        report.reserve = ReserveStatus(
            reserve, immature, owed, warning=reserve < self.reserve_warning_sats
        )
        return report

    async def _price(self, now: float, spend: Callable[[], bool], report: StepReport) -> bool:
        """Price and credit PPS/FPPS shares, a batch per event; False when out of budget."""
        while True:
            batch = await self.store.call(lambda s: next_pps_batch(s, self.pps_batch))
            if batch is None:
                return True
            if isinstance(batch, PpsWait):
                report.unpriced = batch
                return True
            if not spend():
                return False
            credits = await self.store.call(lambda s, b=batch: post_pps_batch(s, b, now))  # type: ignore[misc]
            report.priced += batch.shares
            report.pps_credited += sum(credits.values())
            if batch.skipped:
                report.skipped += batch.skipped
                log.warning(
                    "%d shares of a PPS epoch (ids %d-%d) were judged before the pool recorded "
                    "any job's terms (a ledger from before [accounting]): not PPS-priced",
                    batch.skipped,
                    batch.first,
                    batch.until,
                )

    async def _advance(
        self,
        block: OpenBlock,
        snap: ChainSnapshot,
        now: float,
        spend: Callable[[], bool],
        report: StepReport,
        unchanged: list[tuple[str, int]],
    ) -> bool:
        """Write the event `block` calls for at this tip; False when out of budget."""
        tracked = TrackedBlock(
            block.hash_hex, block.height, block.state, block.confirmations, block.changed_at
        )
        moved, note = advance(tracked, snap.tip, snap.hash_at, now)
        if note is None:
            if moved.confirmations != block.confirmations:
                unchanged.append((block.hash_hex, moved.confirmations))
            return True
        if moved.state is BlockState.ORPHANED:
            if not spend():
                return False
            if await self.store.call(lambda s: post_orphan(s, block, now)):
                report.reversed += 1
            report.orphaned += 1
            log.warning(
                "block %s at height %d left the chain: orphaned", block.hash_hex, block.height
            )
            return True
        if block.state is BlockState.FOUND:
            if not spend():
                return False
            difficulty = header_difficulty(await self.node.getblockheader(block.hash_hex))
            conf = moved.confirmations
            await self.store.call(lambda s: post_found(s, block, difficulty, conf, now))
            report.posted += 1
        if moved.state is BlockState.MATURE:
            if not spend():
                return False
            await self.store.call(lambda s: post_mature(s, block, moved.confirmations, now))
            report.credited += 1
        return True

    async def snapshot(self, heights: set[int]) -> ChainSnapshot | None:
        """A consistent view of the active chain at `heights` (None: it kept moving)."""
        for _ in range(SNAPSHOT_TRIES):
            try:
                tip = await self.node.getblockcount()
                top = await self.node.getblockhash(tip)
                hashes = {h: await self.node.getblockhash(h) for h in sorted(heights) if h <= tip}
                if (
                    await self.node.getblockcount() == tip
                    and await self.node.getblockhash(tip) == top
                ):
                    return ChainSnapshot(tip, hashes)
            except RPCError as exc:  # a height vanished under a reorg: read again (a node
                # that is away raises NodeUnavailable, which ends the pass)
                log.debug("chain view moved: %s", exc)
            await asyncio.sleep(0.05)
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Passes every `poll_interval` seconds until `stop` is set; outages are retried."""
        warned: int | None = None  # the reserve last warned about (logged once per value)
        while not stop.is_set():
            try:
                report = await self.step()
                if (
                    report.tracked
                    or report.posted
                    or report.credited
                    or report.orphaned
                    or report.priced
                ):
                    log.info("accounting pass: %s", report)
                for hash_hex in report.waiting:
                    log.warning("block %s: its finding share is not in the ledger yet", hash_hex)
                wait = report.unpriced
                if wait is not None and self.clock() - wait.time > STALL_WARNING_S:
                    log.warning("PPS pricing waits before share %d: %s", wait.share_id, wait.reason)
                warn = report.reserve if report.reserve and report.reserve.warning else None
                if warn is not None and warn.reserve != warned:  # once per new reserve value
                    warned = warn.reserve
                    log.warning(
                        "PPS reserve %d sats is below the warning threshold %d sats "
                        "(miners are owed %d sats)",
                        warn.reserve,
                        self.reserve_warning_sats,
                        warn.owed_to_miners,
                    )
            except HashfarmError as exc:
                log.error(
                    "accounting pass failed (retrying in %.0f s): %s", self.poll_interval, exc
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
