"""`hashfarm miner`: mine for a Stratum V1 pool, or solo straight onto a node.

    hashfarm miner -o stratum+tcp://HOST:PORT -u USER[.WORKER] -p PASS --backend NAME --threads N
    hashfarm miner --solo --rpc http://user:pass@127.0.0.1:18443 --address ADDR

Every flag also reads a `HASHFARM_MINER_*` environment variable (e.g. HASHFARM_MINER_URL).
Output: a Rich live table by default, `--quiet` for problems only, `--json` for one JSON
object per line. Exit status 1 with the reason when the pool refuses the worker or a
setting is wrong; Ctrl-C stops cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import click

from hashfarm.errors import ConfigError, HashfarmError
from hashfarm.miner.client import StratumMiner
from hashfarm.miner.display import Reporter
from hashfarm.miner.engine import check_backend
from hashfarm.miner.settings import MinerSettings, OutputMode, PoolURL
from hashfarm.miner.solo import SoloMiner
from hashfarm.miner.stats import MinerStats
from hashfarm.node.rpc import RPCClient


@click.command(context_settings={"auto_envvar_prefix": "HASHFARM_MINER"})
@click.option("-o", "--url", help="Pool URL: stratum+tcp://HOST:PORT.")
@click.option("-u", "--user", default="", help="Pool user: ADDRESS[.WORKER] or ACCOUNT.WORKER.")
@click.option("-p", "--password", "password", default="x", show_default=True, help="Pool password.")
@click.option("--backend", default="hashlib", show_default=True, help="Hashing backend.")
@click.option(
    "--threads", "-t", default=1, show_default=True, type=click.IntRange(1), help="Hashing workers."
)
@click.option(
    "--executor",
    type=click.Choice(["auto", "process", "thread"]),
    default="auto",
    show_default=True,
    help="Where scans run (auto: processes for hashlib, threads for numba/GPU).",
)
@click.option("--no-version-rolling", is_flag=True, help="Do not ask for BIP 310 version-rolling.")
@click.option(
    "--suggest-difficulty", type=float, help="Send mining.suggest_difficulty with this value."
)
@click.option(
    "--max-hashrate",
    type=click.FloatRange(0, min_open=True),
    help="Cap the total hashrate (H/s): sleep between scans (e.g. a calm regtest demo).",
)
@click.option("--solo", is_flag=True, help="Mine blocks straight onto a node (no pool).")
@click.option("--rpc", "rpc_url", help="Solo: node JSON-RPC URL (http://user:pass@host:port).")
@click.option("--rpc-cookie", type=click.Path(dir_okay=False), help="Solo: Core's .cookie file.")
@click.option("--address", help="Solo: the address the coinbase pays.")
@click.option("--blocks", type=click.IntRange(1), help="Solo: stop after this many blocks.")
@click.option("--quiet", "-q", is_flag=True, help="Print only problems and found blocks.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (events, stats).")
@click.option(
    "--stats-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds between stats lines (--quiet, --json).",
)
def miner(**opts: Any) -> None:
    """Mine with a Stratum V1 pool, or solo with --solo."""
    try:
        settings = _settings(opts)
        check_backend(settings.backend)
        if opts["solo"]:
            _require_solo(opts)
        elif not opts["url"]:
            raise ConfigError("miner.url: -o stratum+tcp://HOST:PORT is required (or --solo)")
        url = None if opts["solo"] else PoolURL.parse(opts["url"])
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(_run(settings, url, opts))
        except HashfarmError as exc:
            raise click.ClickException(str(exc)) from exc


def _settings(opts: dict[str, Any]) -> MinerSettings:
    output: OutputMode = "json" if opts["as_json"] else "quiet" if opts["quiet"] else "live"
    return MinerSettings(
        user=opts["user"],
        password=opts["password"],
        backend=opts["backend"],
        threads=opts["threads"],
        executor=opts["executor"],
        version_rolling=not opts["no_version_rolling"],
        suggest_difficulty=opts["suggest_difficulty"],
        max_hashrate=opts["max_hashrate"],
        output=output,
        stats_interval=opts["stats_interval"],
    ).validate()


def _require_solo(opts: dict[str, Any]) -> None:
    for key in ("rpc_url", "address"):
        if not opts[key]:
            raise ConfigError(f"miner.{key.removesuffix('_url')}: required with --solo")


async def _run(settings: MinerSettings, url: PoolURL | None, opts: dict[str, Any]) -> None:
    stats = MinerStats(settings.backend, settings.threads, time.monotonic())
    reporter = Reporter(stats, settings.output, stats_interval=settings.stats_interval)
    display = asyncio.create_task(reporter.run())
    try:
        if url is not None:
            await StratumMiner(settings, url, stats, reporter).run()
        else:
            async with RPCClient(opts["rpc_url"], cookie_file=opts["rpc_cookie"]) as rpc:
                solo = SoloMiner(
                    settings, rpc, opts["address"], stats, reporter, max_blocks=opts["blocks"]
                )
                await solo.run()
    finally:
        display.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await display
        if settings.output != "live":
            reporter.print_stats()


__all__ = ["miner"]
