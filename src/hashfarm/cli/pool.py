"""`hashfarm pool`: build the settings, then wire node RPC -> ledger -> stats -> Pool -> API.

Settings come from TOML < `HASHFARM_*` < flags (`hashfarm.pool.config`); a bad one exits
with status 2 and a message naming the key before anything is started. With no RPC URL the
node is Core's default for the network (127.0.0.1:8332 on mainnet), and with no credentials
its cookie in the default data directory (`node_access`). The process runs until SIGINT or
SIGTERM, also while it still waits for the node, then stops in reverse order so every
acknowledged share is committed before exit (a SIGKILL loses nothing acknowledged either: see
docs/persistence.md). A failure at start is one line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import orjson

from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.server import ApiServer
from hashfarm.chain.networks import get_network
from hashfarm.errors import ConfigError, HashfarmError, NodeAuthError, NodeUnavailable
from hashfarm.node.defaults import default_cookie, default_rpc_url
from hashfarm.node.rpc import RPCClient
from hashfarm.node.template import gbt_rules
from hashfarm.pool.config import load_settings, redact_message, redact_url
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import PoolSettings
from hashfarm.pool.shareflow import BrokerLedger
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
    "rpc_password_file": "node.rpc_password_file",
    "rpc_cookie": "node.rpc_cookie",
    "datadir": "node.datadir",
    "zmq_hashblock": "node.zmq_hashblock",
    "stratum_host": "stratum.host",
    "stratum_port": "stratum.port",
    "proxy_protocol_from": "stratum.proxy_protocol_from",
    "db": "storage.url",
    "http_host": "http.host",
    "http_port": "http.port",
    "role": "cluster.role",
    "frontend_id": "cluster.frontend_id",
    "broker": "cluster.broker_url",
    "spool_dir": "cluster.spool_dir",
    "admin_port": "http.admin_port",
}


@click.command("pool")
@click.option("--config", "config_file", metavar="FILE", help="TOML settings file.")
@click.option("--network", metavar="NAME", help="mainnet, testnet, testnet4, signet, regtest.")
@click.option("--mode", type=click.Choice(["solo", "pooled"]), help="Who the coinbase pays.")
@click.option("--payout-address", metavar="ADDR", help="Pooled mode: the pool's address.")
@click.option("--rpc-url", metavar="URL", help="The node's JSON-RPC URL [Core's for --network].")
@click.option("--rpc-user", metavar="U", help="RPC user name.")
@click.option(
    "--rpc-password", metavar="P", help="RPC password (bcoin: its api-key); shows in `ps`."
)
@click.option("--rpc-password-file", metavar="FILE", help="File holding the RPC password.")
@click.option("--rpc-cookie", metavar="FILE", help="Bitcoin Core's .cookie file.")
@click.option("--datadir", metavar="DIR", help="Core's -datadir, for its cookie [~/.bitcoin].")
@click.option("--zmq-hashblock", metavar="URL", help="Core's ZMQ hashblock endpoint.")
@click.option(
    "--stratum-host", metavar="H", help="Listen address [127.0.0.1: this machine; 0.0.0.0: all]."
)
@click.option("--stratum-port", type=int, metavar="N", help="Stratum TCP port.")
@click.option(
    "--proxy-protocol-from",
    metavar="ADDRS",
    help="Load balancers (IPs, networks; comma-separated) that send a PROXY v1/v2 header.",
)
@click.option("--db", metavar="URL", help="sqlite:///PATH or postgresql://...")
@click.option("--http-host", metavar="H", help="HTTP API listen address [127.0.0.1: keep it].")
@click.option("--http-port", type=int, metavar="N", help="HTTP API port (0: off).")
@click.option(
    "--role",
    type=click.Choice(["all", "stratum", "ledger"]),
    help="all: one process [default]; stratum: a front end; ledger: the broker's writer.",
)
@click.option("--frontend-id", type=int, metavar="N", help="Front end: unique id 0..255.")
@click.option("--broker", metavar="URL", help="NATS JetStream [nats://127.0.0.1:4222].")
@click.option("--spool-dir", metavar="DIR", help="Front end: spool while the broker is away.")
@click.option("--admin-port", type=int, metavar="N", help="Admin listener port (login) [0: off].")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--log-json", is_flag=True, help="One JSON object per log line (for collectors).")
def pool(config_file: str | None, log_level: str, log_json: bool, **flags: Any) -> None:
    """Run the Stratum V1 pool on a Bitcoin node (defaults: local regtest, SQLite)."""
    _stop_before_the_loop()
    try:
        settings = load_settings(
            config_file=config_file, flags={FLAG_KEYS[k]: v for k, v in flags.items()}
        )
        access = node_access(settings)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    configure_logging(log_level, as_json=log_json)
    if flags.get("rpc_password") is not None:
        log.warning("--rpc-password is visible to every user of this machine (ps, /proc); "
                    "use --rpc-password-file or $HASHFARM_NODE_RPC_PASSWORD")  # fmt: skip
    for hint in exposure_hints(settings):
        log.warning("%s", hint)
    log.info("node: %s, auth: %s", redact_url(access.url), access.auth)
    role = settings.cluster.role
    if role == "stratum":
        log.info("role: stratum front end %d, broker %s", settings.cluster.frontend_id,
                 redact_url(settings.cluster.broker_url))  # fmt: skip
    else:
        log.info("storage: %s%s", redact_url(settings.storage.url),
                 "" if role == "all" else f" (role: ledger, broker "
                 f"{redact_url(settings.cluster.broker_url)})")  # fmt: skip
    try:
        run(serve(settings, access=access))
    except NodeAuthError as exc:
        log.error("the node at %s refused the credentials (%s): %s", redact_url(access.url),
                  access.auth, _one_line(exc, settings, access))  # fmt: skip
        sys.exit(1)
    except NodeUnavailable as exc:
        log.error("no answer from the node at %s (is it running, on this network's port?): %s",
                  redact_url(access.url), _one_line(exc, settings, access))  # fmt: skip
        sys.exit(1)
    except HashfarmError as exc:
        log.error("%s", _one_line(exc, settings, access))
        sys.exit(1)
    except OSError as exc:  # a port in use, a database file that cannot be created
        log.error("cannot start: %s", _one_line(exc, settings, access))
        sys.exit(1)


def _one_line(exc: BaseException, settings: PoolSettings, access: NodeAccess) -> str:
    """The error on one line, with no URL's password in it (drivers echo what they parse)."""
    return redact_message(redact_message(str(exc), settings.storage.url), access.url)


@dataclass(frozen=True)
class NodeAccess:
    """Where the node is and how the pool proves who it is (resolved from NodeSettings)."""

    url: str  # may carry user:password, which RPCClient takes out
    user: str | None
    password: str | None
    cookie: Path | None
    auth: str  # for the start-up log line: which credentials, never their value


def node_access(settings: PoolSettings) -> NodeAccess:
    """The node's URL (Core's default port for the network unless `node.rpc_url` is set)
    and credentials: the cookie file, else user/password (flag, file, environment or URL),
    else the cookie Core writes in its data directory for the network. ConfigError when the
    password file cannot be read."""
    node = settings.node
    url = node.rpc_url or default_rpc_url(settings.network)
    password = _read_password(node.rpc_password_file) if node.rpc_password_file else None
    password = node.rpc_password if password is None else password
    if node.rpc_cookie:
        cookie = Path(node.rpc_cookie).expanduser()
        return NodeAccess(url, None, None, cookie, f"cookie file {cookie}")
    if node.rpc_user is not None or password is not None or redact_url(url) != url:
        source = "password file" if node.rpc_password_file else "user/password"
        return NodeAccess(url, node.rpc_user, password, None, source)
    cookie = default_cookie(settings.network, node.datadir)
    # Core makes the cookie when it starts, so a missing one is waited for, except on regtest,
    # where a node without any auth (bcoin without an api-key) is normal.
    if node.datadir or cookie.exists() or not _regtest(settings):
        found = "" if cookie.exists() else " (not there yet: is the node running?)"
        return NodeAccess(url, None, None, cookie, f"cookie file {cookie}{found}")
    return NodeAccess(url, None, None, None, f"none (none given, and no cookie at {cookie})")


def _read_password(path: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"cannot read node.rpc_password_file {path}: {reason}") from exc
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"node.rpc_password_file {path} is empty: the first line is used")
    return password


def exposure_hints(settings: PoolSettings) -> list[str]:
    """Warnings about addresses that are likely wrong for the network: Stratum on loopback
    off regtest (no miner on the LAN can connect), the HTTP API on every interface."""
    hints = []
    if _loopback(settings.stratum.host) and not _regtest(settings):
        hints.append(
            f"stratum listens on {settings.stratum.host} only: miners on other machines (a "
            "Bitaxe on the LAN) cannot connect; use --stratum-host 0.0.0.0 or this machine's "
            "LAN address"
        )
    if settings.http.port and not _loopback(settings.http.host):
        hints.append(
            f"the HTTP API listens on {settings.http.host}: its read routes have no "
            "authentication and show every worker; keep it on 127.0.0.1 behind a proxy "
            "(docs/security.md)"
        )
    return hints


def _regtest(settings: PoolSettings) -> bool:
    return get_network(settings.network).name.startswith("regtest")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: cannot tell without resolving it
        return False


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


async def serve(
    settings: PoolSettings, stop: asyncio.Event | None = None, *, access: NodeAccess | None = None
) -> None:
    """Start everything, serve until `stop` is set (or SIGINT/SIGTERM), then shut down.

    A stop asked while the pool still starts (waiting for the node) cancels the start."""
    stop = stop or _stop_on_signals()
    if settings.cluster.role == "ledger":
        from hashfarm.cli.pool_roles import serve_ledger  # the broker (nats-py): only here

        await serve_ledger(settings, stop, access=access or node_access(settings))
        return
    async with contextlib.AsyncExitStack() as stack:
        starting = asyncio.ensure_future(
            stack.enter_async_context(running_pool(settings, access=access))
        )
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not starting.done():
                starting.cancel()
                await asyncio.wait({starting})  # let it close what it opened
        if starting.cancelled():
            log.warning("stopped before the pool was ready (it was still starting)")
            return
        running = starting.result()  # a failed start raises here
        log.info("pool ready: stratum %s:%d, api port %d", settings.stratum.host,
                 running.pool.stratum_port, running.api.port if running.api else 0)  # fmt: skip
        await _until_stop_or_lease_lost(stop, running)
        log.info("stopping")
    if running.lease is not None and running.lease.lost.is_set():
        raise HashfarmError(running.lease.lost_reason)  # exit 1: a supervisor must not loop


async def _until_stop_or_lease_lost(stop: asyncio.Event, running: RunningPool) -> None:
    """Serve until `stop`, or until a front end loses its frontend_id lease to another."""
    if running.lease is None:
        await stop.wait()
        return
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(running.lease.lost.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


@dataclass(frozen=True)
class RunningPool:
    """The wired pool process: the pool, its statistics, its ledger and its API."""

    pool: Pool
    stats: PoolStats
    ledger: GroupCommitLedger | BrokerLedger  # a front end's (role stratum): the broker
    api: ApiServer | None
    lease: Any = None  # a front end's FrontendLease (broker/lease.py); None in other roles


@contextlib.asynccontextmanager
async def running_pool(
    settings: PoolSettings, *, access: NodeAccess | None = None
) -> AsyncIterator[RunningPool]:
    """Start node client -> ledger -> stats -> Pool -> API; stop in reverse order on exit."""
    access = access or node_access(settings)
    async with contextlib.AsyncExitStack() as stack:
        rpc = RPCClient(access.url, user=access.user, password=access.password,
                        cookie_file=access.cookie, timeout=settings.node.rpc_timeout,
                        gbt_rules=gbt_rules(settings.network))  # fmt: skip
        stack.push_async_callback(rpc.close)
        ledger: GroupCommitLedger | BrokerLedger
        lease = None
        if settings.cluster.role == "stratum":
            from hashfarm.cli.pool_roles import acquire_lease, open_broker_ledger  # nats-py

            if settings.cluster.lease:
                lease = await acquire_lease(settings)  # LeaseHeld: another has the id
                stack.push_async_callback(lease.close)
            ledger = await open_broker_ledger(settings)
        else:
            ledger = await open_ledger(settings.storage)
        stack.push_async_callback(ledger.close)
        stats = PoolStats()
        forgetting = asyncio.ensure_future(_forget_idle_workers(stats))
        stack.callback(forgetting.cancel)
        accountant = None
        if (
            settings.mode == "pooled"
            and settings.accounting.enabled
            and isinstance(ledger, GroupCommitLedger)
        ):  # a front end's accounting runs in the ledger role
            from hashfarm.pool.accountant import Accountant, NodeLogin  # numpy: only then

            login = NodeLogin(access.url, access.user, access.password, access.cookie,
                              settings.node.rpc_timeout)  # fmt: skip
            accountant = Accountant(settings, login)  # job terms recorded, blocks credited
            await accountant.start()
            stack.push_async_callback(accountant.close)
        core = settings
        if isinstance(ledger, BrokerLedger):  # a front end: no coinbase planning, no database
            core = replace(settings, accounting=replace(settings.accounting, enabled=False))
        pool_ = Pool(core, rpc, ledger, observers=(stats,), hashblock=_hashblock(settings),
                     job_terms=accountant.recorder if accountant else getattr(
                         ledger, "job_terms", None))  # fmt: skip
        await pool_.start()
        stack.push_async_callback(pool_.stop)
        api = None
        if settings.http.port:
            info = PoolInfo(settings.network, settings.mode, pool_.stratum_port, time.time())
            api = ApiServer(ReadModel(info, pool_, stats, ledger), settings.http.host,
                            settings.http.port,
                            admin_token_file=settings.http.admin_token_file,
                            admin_host=settings.http.admin_host,
                            admin_port=settings.http.admin_port,
                            admin_password_file=settings.http.admin_password_file,
                            ledger_url=settings.storage.url if isinstance(
                                ledger, GroupCommitLedger) else None,  # a front end: no db
                            reserve_warning_sats=settings.accounting.reserve_warning_sats,
                            )  # fmt: skip
            await api.start()
            stack.push_async_callback(api.stop)
        yield RunningPool(pool_, stats, ledger, api, lease)


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


def _stop_before_the_loop() -> None:
    """SIGTERM/SIGINT before the event loop takes them over (`_stop_on_signals`) end the
    process cleanly too: a supervisor's stop during start-up is not a crash."""

    def stop(signum: int, frame: object) -> None:
        log.warning("stopped before the pool was ready (signal %d at start-up)", signum)
        raise SystemExit(0)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
