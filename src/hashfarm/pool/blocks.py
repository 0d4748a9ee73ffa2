"""Winning shares become blocks: assemble, `submitblock`, confirm, record.

Nothing slow stands between the share and the node: the block's bytes are assembled
synchronously from parts prepared with the template (its transactions are concatenated once
per template), the `submitblock` request is the first await, and only after the node has
answered do we confirm, write to the ledger and tell observers. A rejected block is logged
at ERROR with the node's reason.

Proving the coinbase at start uses the same assembly: a block with the pool's real coinbase
layout goes to `getblocktemplate` in proposal mode (BIP 23: the node checks everything but
proof of work), and the pool refuses to start unless the node finds nothing wrong.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from hashfarm.chain.serialize import encode_compact_size
from hashfarm.errors import HashfarmError, NodeError, NodeUnavailable
from hashfarm.pool.jobs import PoolJob
from hashfarm.pool.records import BlockRecord, PoolObserver, ShareLedger
from hashfarm.pool.tipwatch import NodeRPC
from hashfarm.stratum.work import serialize_header

log = logging.getLogger(__name__)

SUBMIT_PATIENCE = 120.0  # seconds a found block keeps retrying submitblock while the node is away
CONFIRM_TRIES = 20  # getblockhash attempts (50 ms apart) before a block counts as not in chain
ORPHANED = "not in the active chain (valid, but another block at this height won)"


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
    if verdict == "inconclusive-not-best-prevblk":
        raise NodeError("coinbase proof inconclusive: the tip moved; retry")
    raise NodeError(f"the node rejects the pool's block layout: {verdict}")


class BlockSubmitter:
    """Submits found blocks, confirms them and records the verdict."""

    def __init__(
        self,
        rpc: NodeRPC,
        ledger: ShareLedger,
        observers: Sequence[PoolObserver],
        on_accepted: Callable[[BlockRecord], Awaitable[None]] | None = None,
    ) -> None:
        self.rpc = rpc
        self.on_accepted = on_accepted  # e.g. fetch the next template without waiting
        self.ledger = ledger
        self.observers = observers
        self.found: list[BlockRecord] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_submit_latency = 0.0  # seconds from the share to the request being sent

    def submit(self, found: Found, started: float) -> None:
        """Assemble now and send `submitblock` at once (the caller does not wait)."""
        raw_hex = block_hex(found.job, found.header, found.extranonce)
        task = asyncio.ensure_future(self._submit(found, raw_hex, started))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submit(self, found: Found, block_hex: str, started: float) -> None:
        self.last_submit_latency = time.perf_counter() - started
        verdict = await self._send(found, block_hex)
        del block_hex  # a mainnet block's hex is ~2 MB: not kept while confirming
        accepted = await self._confirm(found, verdict)
        record = BlockRecord(
            height=found.job.template.height,
            hash_hex=found.hash_hex,
            reward_sats=found.job.template.coinbase_value,
            finder_worker=found.worker,
            finder_account=found.account,
            time=time.time(),
            accepted_by_node=accepted,
            node_verdict=None if accepted else (verdict or ORPHANED),
        )
        self._report(record)
        if accepted and self.on_accepted is not None:
            await self.on_accepted(record)
        await self._record(record)

    async def _send(self, found: Found, block_hex: str) -> str | None:
        """`submitblock`, retried while the node is away (a found block is worth waiting for)."""
        deadline = time.monotonic() + SUBMIT_PATIENCE
        while True:
            try:
                return await self.rpc.submitblock(block_hex)
            except NodeUnavailable as exc:
                if time.monotonic() > deadline:
                    return f"submitblock failed: {exc}"
                log.error("block %s waits for the node: %s", found.hash_hex, exc)
                await asyncio.sleep(1.0)
            except NodeError as exc:
                return f"submitblock failed: {exc}"

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
        elif rec.node_verdict == ORPHANED:  # valid, but a sibling won the race: no alarm
            log.warning(
                "BLOCK ORPHANED height %d %s by %s: %s",
                rec.height,
                rec.hash_hex,
                rec.finder_worker,
                rec.node_verdict,
            )
        else:
            log.error(
                "BLOCK REJECTED height %d %s by %s: %s",
                rec.height,
                rec.hash_hex,
                rec.finder_worker,
                rec.node_verdict,
            )

    async def _record(self, rec: BlockRecord) -> None:
        try:
            await self.ledger.record_block(rec)
        except HashfarmError as exc:
            log.error("block %s not recorded in the ledger: %s", rec.hash_hex, exc)
        for observer in self.observers:
            observer.on_block(rec)

    async def drain(self) -> None:
        """Wait for submissions in flight (at stop)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
