"""`hashfarm pool`: build the settings, then wire node RPC -> ledger -> stats -> Pool -> API.

Settings come from TOML < `HASHFARM_*` < flags (`hashfarm.pool.config`); a bad one exits
with status 2 and a message naming the key before anything is started. The process runs
until SIGINT or SIGTERM, then stops in reverse order so every acknowledged share is
committed before exit (a SIGKILL loses nothing acknowledged either: see docs/persistence.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import click
import orjson

from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.server import ApiServer
from hashfarm.errors import ConfigError, HashfarmError
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.config import load_settings
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import PoolSettings
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage import GroupCommitLedger, open_ledger

log = logging.getLogger("hashfarm.cli.pool")

FORGET_INTERVAL = 3600.0  # seconds between sweeps of idle workers out of the statistics

# flag name (as click passes it) -> dotted settings key
FLAG_KEYS = {
    "network": "network",
    "mode": "mode",
    "payout_address": "payout_address",
    "rpc_url": "node.rpc_url",
    "rpc_user": "node.rpc_user",
    "rpc_password": "node.rpc_password",
    "rpc_cookie": "node.rpc_cookie",
    "zmq_hashblock": "node.zmq_hashblock",
    "stratum_host": "stratum.host",
    "stratum_port": "stratum.port",
    "db": "storage.url",
    "http_host": "http.host",
    "http_port": "http.port",
}


@click.command("pool")
@click.option("--config", "config_file", metavar="FILE", help="TOML settings file.")
@click.option("--network", metavar="NAME", help="mainnet, testnet, testnet4, signet, regtest.")
@click.option("--mode", type=click.Choice(["solo", "pooled"]), help="Who the coinbase pays.")
@click.option("--payout-address", metavar="ADDR", help="Pooled mode: the pool's address.")
@click.option("--rpc-url", metavar="URL", help="The node's JSON-RPC URL.")
@click.option("--rpc-user", metavar="U", help="RPC user name.")
@click.option("--rpc-password", metavar="P", help="RPC password (bcoin: its api-key).")
@click.option("--rpc-cookie", metavar="FILE", help="Bitcoin Core's .cookie file.")
@click.option("--zmq-hashblock", metavar="URL", help="Core's ZMQ hashblock endpoint.")
@click.option("--stratum-host", metavar="H", help="Address miners connect to.")
@click.option("--stratum-port", type=int, metavar="N", help="Stratum TCP port.")
@click.option("--db", metavar="URL", help="sqlite:///PATH or postgresql://...")
@click.option("--http-host", metavar="H", help="Address of the HTTP API.")
@click.option("--http-port", type=int, metavar="N", help="HTTP API port (0: off).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--log-json", is_flag=True, help="One JSON object per log line (for collectors).")
def pool(config_file: str | None, log_level: str, log_json: bool, **flags: Any) -> None:
    """Run the Stratum V1 pool on a Bitcoin node (defaults: local regtest, SQLite)."""
    try:
        settings = load_settings(
            config_file=config_file, flags={FLAG_KEYS[k]: v for k, v in flags.items()}
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    configure_logging(log_level, as_json=log_json)
    try:
        run(serve(settings))
    except HashfarmError as exc:
        log.error("%s", exc)
        sys.exit(1)
    except OSError as exc:  # a port in use, a database file that cannot be created
        log.error("cannot start: %s", exc)
        sys.exit(1)


def configure_logging(level: str, *, as_json: bool = False) -> None:
    """One line per event: time, level, component, message (sessions add their prefix)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"
        )
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])


class JsonFormatter(logging.Formatter):
    """`{"time": UNIX s, "level", "logger", "message"[, "error"]}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def run(main: Any) -> None:
    """Run a coroutine on uvloop when it is installed, else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def serve(settings: PoolSettings, stop: asyncio.Event | None = None) -> None:
    """Start everything, serve until `stop` is set (or SIGINT/SIGTERM), then shut down."""
    stop = stop or _stop_on_signals()
    async with running_pool(settings) as running:
        log.info("pool ready: stratum %s:%d, api port %d", settings.stratum.host,
                 running.pool.stratum_port, running.api.port if running.api else 0)  # fmt: skip
        await stop.wait()
        log.info("stopping")


@dataclass(frozen=True)
class RunningPool:
    """The wired pool process: the pool, its statistics, its ledger and its API."""

    pool: Pool
    stats: PoolStats
    ledger: GroupCommitLedger
    api: ApiServer | None


@contextlib.asynccontextmanager
async def running_pool(settings: PoolSettings) -> AsyncIterator[RunningPool]:
    """Start node client -> ledger -> stats -> Pool -> API; stop in reverse order on exit."""
    node = settings.node
    async with contextlib.AsyncExitStack() as stack:
        rpc = RPCClient(node.rpc_url, user=node.rpc_user, password=node.rpc_password,
                        cookie_file=node.rpc_cookie, timeout=node.rpc_timeout)  # fmt: skip
        stack.push_async_callback(rpc.close)
        ledger = await open_ledger(settings.storage)
        stack.push_async_callback(ledger.close)
        stats = PoolStats()
        forgetting = asyncio.ensure_future(_forget_idle_workers(stats))
        stack.callback(forgetting.cancel)
        pool_ = Pool(settings, rpc, ledger, observers=(stats,), hashblock=_hashblock(settings))
        await pool_.start()
        stack.push_async_callback(pool_.stop)
        api = None
        if settings.http.port:
            info = PoolInfo(settings.network, settings.mode, pool_.stratum_port, time.time())
            api = ApiServer(ReadModel(info, pool_, stats, ledger), settings.http.host,
                            settings.http.port)  # fmt: skip
            await api.start()
            stack.push_async_callback(api.stop)
        yield RunningPool(pool_, stats, ledger, api)


async def _forget_idle_workers(stats: PoolStats) -> None:
    """Drop workers silent for a day, hourly, so the statistics never grow without bound."""
    while True:
        await asyncio.sleep(FORGET_INTERVAL)
        if dropped := stats.forget_idle():
            log.info("statistics: forgot %d workers idle for 24 h", dropped)


def _hashblock(settings: PoolSettings) -> Callable[[], AsyncIterator[str]] | None:
    """The node's ZMQ hashblock stream when configured (only node/ speaks ZMQ)."""
    url = settings.node.zmq_hashblock
    if not url:
        return None
    from hashfarm.node.zmq import hashblock_stream  # here: only ZMQ users load pyzmq

    return lambda: hashblock_stream(url)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
