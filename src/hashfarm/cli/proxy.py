"""`hashfarm proxy`: the farm's Stratum proxy, many machines on one upstream session.

    hashfarm proxy --listen 0.0.0.0:3334 --upstream stratum+tcp://POOL:3333 --user ADDRESS.farm
                   [--password X] [--backup stratum+tcp://OTHER:3333] [--stats-every 60]

Machines connect with `CUSTOMER.MACHINE` user names; the proxy counts each one's accepted
work and logs the stats call's JSON every `--stats-every` seconds (and once at exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import click
import orjson

from hashfarm.errors import HashfarmError, StratumError
from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream

log = logging.getLogger("hashfarm.cli.proxy")


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::]:PORT`) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


@click.command()
@click.option(
    "--listen", default="127.0.0.1:3334", show_default=True, help="HOST:PORT for machines."
)
@click.option("--upstream", required=True, help="Primary pool: stratum+tcp://HOST:PORT.")
@click.option("--user", required=True, help="Upstream user (the pool's ADDRESS[.WORKER]).")
@click.option("--password", default="x", show_default=True, help="Upstream password.")
@click.option("--backup", default=None, help="Failover pool: stratum+tcp://HOST:PORT.")
@click.option(
    "--prefix-bytes",
    default=2,
    show_default=True,
    type=click.IntRange(1, 4),
    help="Upstream extranonce2 bytes given to each machine as its extranonce1.",
)
@click.option(
    "--allow", multiple=True, help="Customer allowed to authorize (repeat); default: any."
)
@click.option(
    "--stats-every",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Seconds between stats log lines.",
)
@click.option("--log-level", default="info", show_default=True)
def proxy(
    listen: str,
    upstream: str,
    user: str,
    password: str,
    backup: str | None,
    prefix_bytes: int,
    allow: tuple[str, ...],
    stats_every: float,
    log_level: str,
) -> None:
    """Run the farm proxy until SIGINT/SIGTERM."""
    host, port = parse_listen(listen)
    try:
        settings = ProxySettings(
            Upstream.parse(upstream), user, password,
            backup=Upstream.parse(backup) if backup else None,
            host=host, port=port, prefix_size=prefix_bytes,
            allowed_workers=frozenset(allow) if allow else None,
        )  # fmt: skip
    except StratumError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        asyncio.run(serve(settings, stats_every))
    except (HashfarmError, TimeoutError, OSError) as exc:
        raise click.ClickException(f"proxy: {exc}") from None


async def serve(
    settings: ProxySettings, stats_every: float, stop: asyncio.Event | None = None
) -> None:
    """Start the proxy, log its stats periodically, stop on `stop` or a signal."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    proxy = Proxy(settings)
    await proxy.start()
    click.echo(f"proxy listening on {settings.host}:{proxy.port}, upstream {settings.upstream}")
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(stats_every):
                    await stop.wait()
            log.info("stats %s", orjson.dumps(proxy.stats_dict()).decode())
    finally:
        await proxy.stop()
