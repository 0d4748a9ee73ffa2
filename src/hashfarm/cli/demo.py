"""`hashfarm demo` (`make demo`): a regtest node, the pool in solo mode and two miners, live.

Everything is real and local: a bcoin regtest node (from node_modules, in memory), the pool
with its ledger, HTTP API and web dashboard (its URL is printed first: the miners, their
shares and the blocks appear on it live), and `hashfarm miner` processes speaking Stratum over
127.0.0.1, each paying its own regtest address (`ADDRESS.rigN`, solo mode). On regtest
every other hash is a block, so the miners run under `--max-hashrate` (a fraction of a hash
per second) to make the run watchable. It ends when `--blocks` blocks are in the chain (or
after `--seconds`) and prints a summary read back from the node: each block, whom its
coinbase paid, and whether that is the miner whose share found it; then shares and
hashrates as the pool estimated them and as the miners measured them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from hashfarm.chain.address import script_to_address
from hashfarm.chain.block import Block
from hashfarm.cli.pool import RunningPool, run, running_pool
from hashfarm.node.bcoin import BcoinNode, free_port
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.settings import (
    HttpSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
    StratumSettings,
)
from hashfarm.units import format_hashrate, sats_to_btc

NETWORK = "regtest-bcoin"  # bcoin's address flavour: what the demo node accepts
WARM_UP = 440  # blocks mined by the node itself first: past segwit activation (432)
SHARE_DIFFICULTY = 2.5e-10  # suggested: every hash a share (network: ~4.7e-10, half blocks)
STOP_GRACE = 5.0  # seconds a miner gets to exit after SIGINT before it is killed
EVENT_LINES = 6  # miner events shown under the live tables


def demo_address(label: str) -> str:
    """A P2WPKH address of the demo, derived from a label (nobody holds its key)."""
    program = hashlib.new("ripemd160", hashlib.sha256(label.encode()).digest()).digest()
    address = script_to_address(b"\x00\x14" + program, NETWORK)
    assert address is not None
    return address


@click.command("demo")
@click.option("--blocks", default=12, show_default=True, help="Blocks to find before stopping.")
@click.option("--miners", default=2, show_default=True, help="`hashfarm miner` processes to run.")
@click.option("--hashrate", default=0.25, show_default=True, type=click.FloatRange(0.01),
              help="Hashrate cap of each miner in H/s (--max-hashrate).")  # fmt: skip
@click.option("--seconds", default=180.0, show_default=True, type=click.FloatRange(1),
              help="Stop mining after this long even if fewer blocks were found.")  # fmt: skip
@click.option("--stay", is_flag=True,
              help="After the summary, keep node, pool and dashboard up until Ctrl-C.")  # fmt: skip
def demo(blocks: int, miners: int, hashrate: float, seconds: float, stay: bool) -> None:
    """Run a regtest node, the pool (solo) and miners until BLOCKS blocks are found."""
    console = Console()
    # Warnings (a block that lost a race, a miner that hung up) print above the live view.
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])  # fmt: skip
    summarized: list[bool] = []
    try:
        run(run_demo(blocks, miners, hashrate, seconds, console, stay=summarized if stay else None))
    except KeyboardInterrupt:
        if summarized:  # --stay: Ctrl-C is how the demo ends
            console.print("node and pool stopped")
            return
        console.print("interrupted: node, pool and miners stopped")
        sys.exit(130)


async def run_demo(blocks: int, miners: int, hashrate: float, seconds: float,
                   console: Console, *, stay: list[bool] | None = None) -> None:  # fmt: skip
    """The whole demo: start, mine with a live view, summarize from the node."""
    began = time.monotonic()
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
                port = running.pool.stratum_port
                web = f"http://127.0.0.1:{settings.http.port}"
                console.print(f"pool: stratum 127.0.0.1:{port}, API {web}/api/pool")
                console.print(f"dashboard: {web}/  (open it: the miners appear on it live)",
                              style="bold")  # fmt: skip
                procs = [MinerProcess(f"rig{i}", demo_address(f"miner-{i}"))
                         for i in range(1, miners + 1)]  # fmt: skip
                async with running_miners(procs, port, hashrate, console):
                    await mine(running, procs, blocks, seconds, console)
                if stay is not None:  # summarize with the pool still up, then wait
                    async with node.rpc() as rpc:
                        await summarize(rpc, running, procs, console)
                    stay.append(True)
                    console.print(f"dashboard still at {web}/ (node and pool up, miners "
                                  "stopped): Ctrl-C ends the demo", style="bold")  # fmt: skip
                    await asyncio.Event().wait()
            async with node.rpc() as rpc:
                await summarize(rpc, running, procs, console)
    console.print(f"demo took {time.monotonic() - began:.0f} s")


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


def hashfarm_command() -> list[str]:
    """How to run `hashfarm`: the console script beside this Python, else through it."""
    script = Path(sys.executable).parent / "hashfarm"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from hashfarm.cli.main import main; main()"]


@dataclass
class MinerProcess:
    """One `hashfarm miner --json` child: its user name and what its JSON lines said."""

    worker: str
    address: str
    proc: asyncio.subprocess.Process | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # the latest `stats` line
    candidates: int = 0  # block candidates it submitted (`block` events)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=EVENT_LINES))
    stderr: bytes = b""

    @property
    def user(self) -> str:
        """The Stratum user: the payout address, then the worker name."""
        return f"{self.address}.{self.worker}"

    async def start(self, port: int, hashrate: float) -> None:
        """Start the miner against the pool on `port`."""
        self.proc = await asyncio.create_subprocess_exec(
            *hashfarm_command(), "miner",
            "-o", f"stratum+tcp://127.0.0.1:{port}", "-u", self.user,
            "--executor", "thread",  # one process: a capped rate needs no worker processes
            "--suggest-difficulty", str(SHARE_DIFFICULTY),
            "--max-hashrate", str(hashrate),
            "--json", "--stats-interval", "1",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Ctrl-C reaches the demo alone; it stops the miners itself and reads their
            # final figures. If the demo dies, the miner's next JSON line breaks its pipe.
            start_new_session=True,
        )  # fmt: skip

    async def read(self) -> None:
        """Follow the JSON lines until the miner exits; keep its stderr for errors."""
        assert self.proc is not None, "start() first"
        stdout, stderr = self.proc.stdout, self.proc.stderr
        assert stdout is not None
        assert stderr is not None
        errors = asyncio.ensure_future(stderr.read())
        async for line in stdout:
            with contextlib.suppress(orjson.JSONDecodeError):
                self._event(orjson.loads(line))
        self.stderr = await errors

    def _event(self, msg: dict[str, Any]) -> None:
        kind = msg.get("event")
        if kind == "stats":
            self.stats = msg
            return
        if kind == "block":
            self.candidates += 1
        if kind in ("block", "rejected", "authorized", "disconnected", "fatal"):
            stamp = time.strftime("%H:%M:%S", time.localtime(msg.get("time", time.time())))
            self.events.append(f"{stamp} {self.worker}: {msg.get('message', kind)}")

    async def stop(self) -> None:
        """SIGINT (the miner prints its final stats and exits), then SIGKILL after a grace."""
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def running_miners(procs: list[MinerProcess], port: int, hashrate: float,
                         console: Console) -> AsyncIterator[None]:  # fmt: skip
    """The miners run inside the block; they are stopped (and read to the end) after it."""
    readers: list[asyncio.Task[None]] = []
    try:
        for p in procs:
            await p.start(port, hashrate)
            readers.append(asyncio.create_task(p.read()))
            pid = p.proc.pid if p.proc else "?"
            console.print(f"miner {p.worker} (pid {pid}): pays {p.address}, "
                          f"--max-hashrate {hashrate:g} H/s")  # fmt: skip
        yield
    finally:
        await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
        if readers:  # the final `stats` lines, written as the miners exit
            await asyncio.wait(readers, timeout=STOP_GRACE)


async def mine(running: RunningPool, procs: list[MinerProcess], blocks: int, seconds: float,
               console: Console) -> None:  # fmt: skip
    """Show the live view until `blocks` blocks the node accepted, or `seconds` passed."""
    began = time.monotonic()
    with Live(view(running, procs, 0.0), console=console, refresh_per_second=4) as live:
        while accepted(running) < blocks and time.monotonic() - began < seconds:
            await asyncio.sleep(0.25)
            for p in procs:
                if p.proc and p.proc.returncode is not None:
                    raise click.ClickException(
                        f"miner {p.worker} exited ({p.proc.returncode}): "
                        + (p.stderr.decode(errors="replace")[-2000:] or "no error output")
                    )
            live.update(view(running, procs, time.monotonic() - began))
    console.print()  # the summary starts on a line of its own


def rate(hps: float) -> str:
    """A hashrate for the demo's tiny regtest rates (fractions of a hash per second)."""
    return f"{hps:.2f} H/s" if hps < 10 else format_hashrate(hps)


def accepted(running: RunningPool) -> int:
    """Blocks the node accepted so far."""
    return running.stats.pool().blocks_found


def view(running: RunningPool, procs: list[MinerProcess], elapsed: float) -> Group:
    """The live view: the pool, each miner (its own figures and the pool's), the blocks."""
    snap = running.stats.pool()
    job = running.pool.current_job()
    head = (f"{elapsed:4.0f} s  height {job.template.height if job else '-'}  connections "
            f"{len(running.pool.sessions())}  shares {snap.shares_accepted} accepted / "
            f"{sum(snap.shares_rejected.values())} rejected  blocks {snap.blocks_found}  "
            f"pool {rate(snap.hashrate['1m'])}")  # fmt: skip
    workers = Table("miner", "pays", "hashrate (miner, 1m)", "hashrate (pool, 1m)",
                    "shares acc/rej", "block candidates", "blocks (pool)",
                    title="miners: as they measure / as the pool sees them")  # fmt: skip
    for p in procs:
        w = running.stats.worker(p.user)
        workers.add_row(
            f"{p.worker} (pid {p.proc.pid if p.proc else '-'})",
            p.address[:12] + "...",
            rate(p.stats.get("hashrate_1m", 0.0)),
            rate(w.hashrate["1m"]) if w else "-",
            f"{w.shares_accepted}/{sum(w.shares_rejected.values())}" if w else "-",
            str(p.candidates),
            str(w.blocks_found) if w else "-",
        )
    recent = Table("height", "hash", "finder", "node", title="latest blocks")
    for b in running.stats.blocks()[:6]:
        recent.add_row(
            str(b.height),
            b.hash_hex[:16] + "...",
            b.finder_worker.rsplit(".", 1)[-1],
            "accepted" if b.accepted_by_node else f"rejected: {b.node_verdict}",
        )
    events = sorted(e for p in procs for e in p.events)[-EVENT_LINES:]
    return Group(head, workers, recent, *(Text(e, style="dim") for e in events))


async def summarize(rpc: RPCClient, running: RunningPool, procs: list[MinerProcess],
                    console: Console) -> None:  # fmt: skip
    """Read every found block back from the node: in the chain? whom does it pay?"""
    names = {p.address: p.worker for p in procs}
    title = "blocks found, read back from the node (ok: in its chain, paying the finder)"
    table = Table("height", "block hash", "finder", "coinbase pays", "reward BTC", "check",
                  title=title)  # fmt: skip
    found = sorted((b for b in running.stats.blocks() if b.accepted_by_node),
                   key=lambda b: b.height)  # fmt: skip
    good, paid_to = 0, dict.fromkeys(names, 0)
    for rec in found:
        in_chain = await rpc.getblockhash(rec.height) == rec.hash_hex
        block = Block.parse(await rpc.getrawblock(rec.hash_hex))
        outputs = block.transactions[0].outputs
        paid = script_to_address(outputs[0].script_pubkey, NETWORK) or "?"
        ok = in_chain and paid == rec.finder_account
        good += ok
        paid_to[paid] = paid_to.get(paid, 0) + ok
        verdict = "ok" if ok else ("replaced" if not in_chain else "WRONG PAYEE")
        table.add_row(
            str(rec.height),
            rec.hash_hex[:20] + "...",
            rec.finder_worker.rsplit(".", 1)[-1],
            f"{paid[:14]}... ({names.get(paid, '?')})",
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
    for p in procs:
        w = running.stats.worker(p.user)
        measured = p.stats.get("hashes", 0) / max(p.stats.get("uptime_s", 0.0), 1e-9)
        console.print(
            f"  {p.user}: {w.shares_accepted if w else 0} shares, "
            f"{paid_to.get(p.address, 0)} blocks paid to it, "
            f"{rate(w.hashrate['5m']) if w else '-'} (pool), {rate(measured)} "
            f"(miner: {p.stats.get('hashes', 0)} hashes in {p.stats.get('uptime_s', 0):.0f} s)"
        )


__all__ = ["demo", "demo_address", "run_demo"]
