"""`hashfarm demo` (`make demo`): a regtest node, the pool in solo mode and two miners, live.

Everything is real and local: a bcoin regtest node (from node_modules, in memory), the pool
with its ledger and HTTP API, and miners speaking Stratum over 127.0.0.1 that hash real
headers. On regtest every other hash is a block, so the demo miners pace themselves (one
hash per `--pace` seconds) to make the run watchable. It ends when `--blocks` blocks are in
the chain and prints a summary read back from the node: each block, whom its coinbase paid,
and whether that is the miner whose share found it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from hashfarm.chain.address import script_to_address
from hashfarm.chain.block import Block
from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import hash_difficulty
from hashfarm.cli.pool import RunningPool, run, running_pool
from hashfarm.node.bcoin import BcoinNode, free_port
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.records import BlockRecord
from hashfarm.pool.settings import (
    HttpSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
    StratumSettings,
)
from hashfarm.stratum import messages
from hashfarm.stratum.codec import LineBuffer, Notification, Response, decode, encode
from hashfarm.stratum.work import Job
from hashfarm.units import format_hashrate, sats_to_btc

NETWORK = "regtest-bcoin"  # bcoin's address flavour: what the demo node accepts
WARM_UP = 440  # blocks mined by the node itself first: past segwit activation (432)
SHARE_DIFFICULTY = 2.5e-10  # suggested: about one hash per share (network: ~4.7e-10)
TIMEOUT = 300.0  # seconds before the demo gives up waiting for blocks


def demo_address(label: str) -> str:
    """A P2WPKH address of the demo, derived from a label (nobody holds its key)."""
    program = hashlib.new("ripemd160", hashlib.sha256(label.encode()).digest()).digest()
    address = script_to_address(b"\x00\x14" + program, NETWORK)
    assert address is not None
    return address


@click.command("demo")
@click.option("--blocks", default=12, show_default=True, help="Blocks to find before stopping.")
@click.option("--miners", default=2, show_default=True, help="Demo miners to run.")
@click.option("--pace", default=2.5, show_default=True, help="Seconds between hashes per miner.")
def demo(blocks: int, miners: int, pace: float) -> None:
    """Run a regtest node, the pool (solo) and miners until BLOCKS blocks are found."""
    console = Console()
    # Warnings (a block that lost a race, a miner that hung up) print above the live view.
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])  # fmt: skip
    run(run_demo(blocks, miners, pace, console))


async def run_demo(blocks: int, miners: int, pace: float, console: Console) -> None:
    """The whole demo: start, mine with a live view, summarize from the node."""
    with tempfile.TemporaryDirectory(prefix="hashfarm-demo-") as tmp:
        async with demo_node(Path(tmp), console) as node:
            settings = PoolSettings(
                network="regtest",
                node=NodeSettings(rpc_url=node.rpc_url, rpc_password=node.api_key),
                stratum=StratumSettings(port=0),
                storage=StorageSettings(url=f"sqlite:///{tmp}/demo-pool.sqlite3"),
                http=HttpSettings(port=free_port()),
            )
            async with running_pool(settings) as running:
                console.print(f"pool: stratum 127.0.0.1:{running.pool.stratum_port}, API "
                              f"http://127.0.0.1:{settings.http.port}/api/pool")  # fmt: skip
                found = await mine(running, blocks, miners, pace, console)
            async with node.rpc() as rpc:
                await summarize(rpc, running, found, console)


@contextlib.asynccontextmanager
async def demo_node(tmp: Path, console: Console) -> AsyncIterator[BcoinNode]:
    """A bcoin regtest node in memory, warmed up past segwit activation."""
    node = BcoinNode(tmp / "bcoin", memory=True, wallet=False)
    console.print("starting the regtest node (bcoin) ...")
    await node.start()
    try:
        async with node.rpc() as rpc:
            await rpc.generatetoaddress(WARM_UP, demo_address("warm-up"))
        console.print(f"node ready at {node.rpc_url}, height {WARM_UP} (segwit active)")
        yield node
    finally:
        await node.stop()


async def mine(running: RunningPool, blocks: int, count: int, pace: float,
               console: Console) -> list[BlockRecord]:  # fmt: skip
    """Run the miners with a live view until `blocks` blocks the node accepted."""
    port = running.pool.stratum_port
    demo_miners = [PacedMiner(port, f"{demo_address(f'miner-{i}')}.rig{i}", pace)
                   for i in range(1, count + 1)]  # fmt: skip
    tasks = [asyncio.ensure_future(m.run()) for m in demo_miners]
    deadline = time.monotonic() + TIMEOUT
    try:
        with Live(view(running), console=console, refresh_per_second=4) as live:
            while accepted(running) < blocks and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                for task in tasks:
                    if task.done() and task.exception():
                        raise task.exception()  # type: ignore[misc]
                live.update(view(running))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [b for b in running.stats.blocks() if b.accepted_by_node]


def rate(hps: float) -> str:
    """A hashrate for the demo's tiny regtest rates (fractions of a hash per second)."""
    return f"{hps:.2f} H/s" if hps < 10 else format_hashrate(hps)


def accepted(running: RunningPool) -> int:
    """Blocks the node accepted so far."""
    return running.stats.pool().blocks_found


def view(running: RunningPool) -> Group:
    """The live view: the pool, each worker, the latest blocks."""
    snap = running.stats.pool()
    job = running.pool.current_job()
    head = (f"height {job.template.height if job else '-'}  connections "
            f"{len(running.pool.sessions())}  shares {snap.shares_accepted} accepted / "
            f"{sum(snap.shares_rejected.values())} rejected  blocks {snap.blocks_found}  "
            f"pool {rate(snap.hashrate['1m'])}")  # fmt: skip
    workers = Table("worker", "accepted", "rejected", "hashrate (1m)", "best share", "blocks",
                    title="workers")  # fmt: skip
    for w in running.stats.workers():
        workers.add_row(w.name[:20] + "..." + w.name[-6:], str(w.shares_accepted),
                        str(sum(w.shares_rejected.values())), rate(w.hashrate["1m"]),
                        f"{w.best_share:.3g}", str(w.blocks_found))  # fmt: skip
    recent = Table("height", "hash", "finder", "node", title="latest blocks")
    for b in running.stats.blocks()[:6]:
        recent.add_row(
            str(b.height),
            b.hash_hex[:16] + "...",
            b.finder_worker[-5:],
            "accepted" if b.accepted_by_node else f"rejected: {b.node_verdict}",
        )
    return Group(head, workers, recent)


async def summarize(rpc: RPCClient, running: RunningPool, found: list[BlockRecord],
                    console: Console) -> None:  # fmt: skip
    """Read every found block back from the node: in the chain? whom does it pay?"""
    title = "blocks found, read back from the node (ok: in its chain, paying the finder)"
    table = Table("height", "block hash", "finder", "coinbase pays", "reward BTC", "check",
                  title=title)  # fmt: skip
    good = 0
    for rec in sorted(found, key=lambda b: b.height):
        in_chain = await rpc.getblockhash(rec.height) == rec.hash_hex
        block = Block.parse(await rpc.getrawblock(rec.hash_hex))
        outputs = block.transactions[0].outputs
        paid = script_to_address(outputs[0].script_pubkey, NETWORK) or "?"
        ok = in_chain and paid == rec.finder_account
        good += ok
        verdict = "ok" if ok else ("replaced" if not in_chain else "WRONG PAYEE")
        table.add_row(
            str(rec.height),
            rec.hash_hex[:20] + "...",
            rec.finder_worker[-4:],
            paid[:14] + "...",
            f"{sats_to_btc(outputs[0].value):.8f}",
            verdict,
        )
    snap = running.stats.pool()
    console.print(table)
    console.print(
        f"{good} of {len(found)} blocks are in the node's chain and pay their finder;"
        f" shares: {snap.shares_accepted} accepted, {sum(snap.shares_rejected.values())} "
        f"rejected; pool hashrate {rate(snap.hashrate['5m'])} (5m)"
    )
    for w in running.stats.workers():
        console.print(
            f"  {w.name}: {w.shares_accepted} shares, {w.blocks_found} blocks, "
            f"{rate(w.hashrate['5m'])}"
        )


@dataclass
class PacedMiner:
    """A minimal Stratum miner: hashes real headers, one every `pace` seconds.

    The stand-in until `hashfarm miner` can be paced: at full speed on regtest (every other
    hash a block) it turns every share into a block race, which is no demo. This one shows
    the pool's whole path (subscribe, suggest_difficulty, authorize, notify, submit) at a
    speed a person can follow.
    """

    port: int
    user: str
    pace: float
    job: Job | None = None
    difficulty: float = 1.0
    extranonce1: bytes = b""
    extranonce2_size: int = 8

    async def run(self) -> None:
        """Connect, hand-shake, then hash and submit until cancelled."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(encode(messages.subscribe(1, "hashfarm-demo/1")))
            writer.write(encode(messages.suggest_difficulty(2, SHARE_DIFFICULTY)))
            writer.write(encode(messages.authorize(3, self.user, "x")))
            hashing = asyncio.ensure_future(self._hash(writer))
            try:
                await self._listen(reader)
            finally:
                hashing.cancel()
            raise ConnectionError(f"{self.user}: the pool closed the connection")
        finally:
            writer.close()

    async def _hash(self, writer: asyncio.StreamWriter) -> None:
        ids = itertools.count(10)
        for en2 in itertools.count():
            await asyncio.sleep(self.pace)
            job = self.job
            if job is None or not self.extranonce1:
                continue
            extranonce2 = en2.to_bytes(self.extranonce2_size, "big")
            header = job.header(self.extranonce1, extranonce2, job.time, 0)
            if hash_difficulty(sha256d(header)) >= self.difficulty:
                share = messages.Submit(self.user, job.job_id, extranonce2, job.time, 0)
                writer.write(encode(messages.submit(next(ids), share)))

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        buffer = LineBuffer(1 << 20)
        while data := await reader.read(1 << 16):
            for line in buffer.feed(data):
                msg = decode(line)
                if isinstance(msg, Response) and msg.id == 1 and msg.ok:
                    sub = messages.parse_subscribe_result(msg.result)
                    self.extranonce1, self.extranonce2_size = sub.extranonce1, sub.extranonce2_size
                elif isinstance(msg, Notification) and msg.method == "mining.notify":
                    self.job = Job.from_params(msg.params)
                elif isinstance(msg, Notification) and msg.method == "mining.set_difficulty":
                    self.difficulty = messages.parse_set_difficulty(msg.params)
