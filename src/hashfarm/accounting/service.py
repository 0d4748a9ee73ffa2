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
   spendable (credited); gone from its height -> orphaned, credits reversed.

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
    CustodialScheme,
    OpenBlock,
    format_spec,
    note_scheme,
    open_blocks,
    post_found,
    post_mature,
    post_orphan,
    set_confirmations,
    track,
    untracked_blocks,
)
from hashfarm.accounting.ledger import AccountingError
from hashfarm.accounting.lifecycle import BlockState, TrackedBlock, advance
from hashfarm.accounting.schemes import Pplns, Prop, Solo
from hashfarm.accounting.store import AccountingStore
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.errors import HashfarmError, NodeError, RPCError

log = logging.getLogger("hashfarm.accounting.service")

SNAPSHOT_TRIES = 5  # reads of the chain view before a pass gives up (the tip kept moving)


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


def header_difficulty(header: Any) -> float:
    """Network difficulty from a header's `bits` (Core: hex string; bcoin: integer)."""
    bits = header["bits"] if isinstance(header, dict) else None
    if isinstance(bits, str):
        bits = int(bits, 16)
    if not isinstance(bits, int) or isinstance(bits, bool):
        raise NodeError(f"block header without usable bits: {header!r}")
    return bits_to_difficulty(bits)


class CreditingService:
    """Credits SOLO, PROP and PPLNS blocks from the pool's ledger, following the node."""

    def __init__(
        self,
        store: AccountingStore,
        node: ChainView,
        scheme: CustodialScheme,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 5.0,
    ) -> None:
        if not isinstance(scheme, Solo | Prop | Pplns):
            raise ValueError(
                f"the crediting service credits solo, prop and pplns, not {scheme.name}: TIDES "
                "pays in the pool's coinbase and PPS/FPPS need each job's terms (not wired yet)"
            )
        self.store = store
        self.node = node
        self.spec = format_spec(scheme)
        self.clock = clock
        self.poll_interval = poll_interval

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
        await self.store.call(lambda s: note_scheme(s, self.spec, now))
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
        return report

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
        while not stop.is_set():
            try:
                report = await self.step()
                if report.tracked or report.posted or report.credited or report.orphaned:
                    log.info("accounting pass: %s", report)
                for hash_hex in report.waiting:
                    log.warning("block %s: its finding share is not in the ledger yet", hash_hex)
            except HashfarmError as exc:
                log.error(
                    "accounting pass failed (retrying in %.0f s): %s", self.poll_interval, exc
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)
