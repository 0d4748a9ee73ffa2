"""Solo mining without a pool: work from `getblocktemplate`, blocks sent with `submitblock`.

This is the whole chain of events a home miner can watch on regtest: the node's template
becomes a coinbase paying `--address` (BIP 34 height, witness commitment, an extranonce
slot) and Stratum-style job fields, the same hashing engine searches for a header under
the *block* target, and a winner is assembled into the full block (coinbase in witness form)
and submitted. A new tip (polled with `getbestblockhash`) or a found block fetches a new
template at once; the node's verdict and whether the block became the tip are reported.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hashfarm.chain.address import address_to_script
from hashfarm.chain.coinbase import CoinbaseParts, build_coinbase
from hashfarm.chain.hashes import sha256d
from hashfarm.chain.networks import get_network
from hashfarm.chain.pow import bits_to_difficulty, bits_to_target
from hashfarm.chain.serialize import encode_compact_size
from hashfarm.chain.tx import TxOut
from hashfarm.errors import ConfigError, HashfarmError, NodeError, NodeUnavailable
from hashfarm.miner.display import Reporter
from hashfarm.miner.engine import HashingEngine
from hashfarm.miner.protocol import FoundShare, MinerJob
from hashfarm.miner.settings import MinerSettings
from hashfarm.miner.stats import MinerStats
from hashfarm.node.template import Template, gbt_rules, parse_template
from hashfarm.stratum.work import make_job

EXTRANONCE_SIZE = 8  # bytes of extranonce in our coinbase (all of it rolled by the threads)
COINBASE_TAG = b"/hashfarm/"  # pushed after the extranonce, visible in the coinbase


class SoloNode(Protocol):
    """What solo mining needs from the node (hashfarm.node.rpc.RPCClient offers it)."""

    async def getblocktemplate(self, rules: Sequence[str] | None = None) -> dict[str, Any]: ...
    async def submitblock(self, block_hex: str) -> str | None: ...
    async def getbestblockhash(self) -> str: ...
    async def getblockchaininfo(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class SoloWork:
    """A template turned into hashable work, and what turns a winner into a block."""

    template: Template
    coinbase: CoinbaseParts
    work: MinerJob

    def block(self, share: FoundShare) -> bytes:
        """The full block for a winning share (coinbase in witness form)."""
        job = share.work.job
        header = job.header(b"", share.extranonce2, share.ntime, share.nonce, share.version)
        if sha256d(header) != share.hash:
            raise HashfarmError("winning header does not rebuild to the hash found")
        coinbase = self.coinbase.transaction(share.extranonce2).serialize(witness=True)
        count = encode_compact_size(1 + len(self.template.transactions))
        return header + count + coinbase + b"".join(tx.data for tx in self.template.transactions)


def build_solo_work(template: Template, payout_script: bytes, job_id: str) -> SoloWork:
    """The coinbase paying `payout_script` and the job whose target is the block target."""
    coinbase = build_coinbase(
        template.height,
        [TxOut(template.coinbase_value, payout_script)],
        extranonce_size=EXTRANONCE_SIZE,
        tag=COINBASE_TAG,
        witness_commitment=template.witness_commitment,
    )
    job = make_job(
        job_id,
        template.prev_hash,
        coinbase.coinb1,
        coinbase.coinb2,
        template.txids,
        template.version,
        template.bits,
        template.curtime,
        True,
    )
    difficulty = bits_to_difficulty(template.bits)
    target = bits_to_target(template.bits)
    work = MinerJob(job, b"", EXTRANONCE_SIZE, difficulty, target, 0, int(job_id))
    return SoloWork(template, coinbase, work)


class SoloMiner:
    """Mines blocks straight onto the node until cancelled (or `max_blocks` are found)."""

    def __init__(
        self,
        settings: MinerSettings,
        node: SoloNode,
        address: str,
        stats: MinerStats,
        reporter: Reporter,
        *,
        poll_interval: float = 0.5,
        refresh_interval: float = 30.0,
        max_blocks: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node, self.address, self.stats, self.reporter = node, address, stats, reporter
        self.poll_interval, self.refresh_interval = poll_interval, refresh_interval
        self.max_blocks = max_blocks
        self.settings = settings
        self.engine = HashingEngine(settings, stats, self._on_share, clock)
        self.found: list[str] = []  # display hashes of blocks the node accepted
        self._current: SoloWork | None = None
        self._changed = asyncio.Event()
        self._submits: set[asyncio.Task[None]] = set()
        self._job_ids = itertools.count(1)
        self._rules: tuple[str, ...] = ("segwit",)  # getblocktemplate rules (set by run)

    async def run(self) -> None:
        """Mine until cancelled, or until `max_blocks` blocks were accepted."""
        info = await self.node.getblockchaininfo()
        try:
            network = get_network(str(info["chain"]))
            script = address_to_script(self.address, network)
        except HashfarmError as exc:
            raise ConfigError(f"miner.address: {exc}") from exc
        self._rules = gbt_rules(network)  # signet: Core refuses a template without its rule
        self.stats.pool = f"solo ({info['chain']})"
        self.stats.connected = True
        await self.engine.run_beside(self._follow(script))

    async def _follow(self, script: bytes) -> None:
        while self.max_blocks is None or len(self.found) < self.max_blocks:
            template = await self._template()
            solo = build_solo_work(template, script, str(next(self._job_ids)))
            self._current = solo
            self._changed.clear()
            self.engine.set_work(solo.work)
            self.stats.difficulty = solo.work.difficulty
            self.reporter.event(
                "job", f"template for height {template.height}", height=template.height,
                txs=len(template.txids), value_sats=template.coinbase_value,
            )  # fmt: skip
            await self._until_stale(template)
        self.engine.set_work(None)

    async def _template(self) -> Template:
        """The node's template; while the node is away, idle and retry with capped backoff."""
        delay = self.settings.backoff_initial
        while True:
            try:
                gbt = await self.node.getblocktemplate(rules=self._rules)
                self.stats.connected = True
                return parse_template(gbt)
            except NodeUnavailable as exc:
                self.engine.set_work(None)
                self.stats.connected = False
                self.reporter.event("node", f"node unavailable ({exc}); retry in {delay:.1f} s",
                                    "warn")  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.backoff_max)

    async def _until_stale(self, template: Template) -> None:
        """Return when the tip moves, a block was submitted, or the template is old."""
        deadline = time.monotonic() + self.refresh_interval
        tip = template.prev_hash[::-1].hex()
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self._changed.wait()
                return
            except TimeoutError:
                try:
                    if await self.node.getbestblockhash() != tip:
                        return
                except NodeUnavailable:
                    return  # the template fetch waits for the node's return

    def _on_share(self, share: FoundShare) -> None:
        solo = self._current
        if solo is None or share.work is not solo.work:
            self.stats.stale_dropped += 1  # another winner of a template already finished
            return
        self._current = None  # exactly one block per template
        self.engine.set_work(None)
        task = asyncio.create_task(self._submit(solo, share))
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)

    async def _submit(self, solo: SoloWork, share: FoundShare) -> None:
        block = solo.block(share)
        block_hash = share.hash[::-1].hex()
        height = solo.template.height
        try:
            verdict = await self.node.submitblock(block.hex())
            tip = await self.node.getbestblockhash()
        except NodeError as exc:
            verdict, tip = f"submit failed: {exc}", ""
        finally:
            self._changed.set()
        if verdict is None and tip == block_hash:
            self.stats.blocks += 1
            self.found.append(block_hash)
            self.reporter.event("block", f"block {height} {block_hash} accepted", "good",
                                height=height, hash=block_hash)  # fmt: skip
        else:
            reason = verdict or "accepted but not the tip"
            self.stats.rejected[reason] += 1
            self.reporter.event("block_rejected", f"block {height} rejected: {reason}", "error",
                                height=height, hash=block_hash, reason=reason)  # fmt: skip
