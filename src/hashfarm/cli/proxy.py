"""`hashfarm proxy`: the farm's Stratum proxy, many machines on one upstream session.

    hashfarm proxy --listen 0.0.0.0:3334 --upstream stratum+tcp://POOL:3333 --user ADDRESS.farm
                   [--password X] [--backup stratum+tcp://OTHER:3333] [--stats-every 60]
                   [--per-customer --upstream-user-template 'ADDRESS.{customer}']
                   [--stats-db proxy.sqlite3] [--stats-listen 127.0.0.1:3335]
                   [--hosting-db sqlite:///hosting.sqlite3 [--hosting-every 300]]
    hashfarm proxy export-work --stats-db proxy.sqlite3 --out work.csv

Machines connect with `CUSTOMER.MACHINE` user names (with --hosting-db: their hosting
machine ids, the customer from hosting's assignments); the proxy counts each one's accepted
work and logs the stats call's JSON every `--stats-every` seconds (and once at exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
from pathlib import Path

import click
import orjson

from hashfarm.errors import HashfarmError, StratumError
from hashfarm.proxy.hosted import keep_reading, read_customers
from hashfarm.proxy.http import start_stats
from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.proxy.store import WorkStore, work_csv

log = logging.getLogger("hashfarm.cli.proxy")


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::]:PORT`) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


@click.group(invoke_without_command=True)
@click.option(
    "--listen", default="127.0.0.1:3334", show_default=True, help="HOST:PORT for machines."
)
@click.option("--upstream", default=None, help="Primary pool: stratum+tcp://HOST:PORT.")
@click.option("--user", default=None, help="Upstream user (the pool's ADDRESS[.WORKER]).")
@click.option(
    "--per-customer",
    is_flag=True,
    help="One upstream session per customer (user from --upstream-user-template).",
)
@click.option(
    "--upstream-user-template",
    default=None,
    help="With --per-customer: a customer's upstream user, e.g. 'ADDRESS.{customer}'.",
)
@click.option(
    "--max-upstreams",
    default=64,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="With --per-customer: upstream sessions (customers) at most.",
)
@click.option(
    "--stats-db",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite file: accepted work per day, customer and machine.",
)
@click.option(
    "--hosting-db",
    default=None,
    help="Hosting store URL (sqlite:///FILE or postgresql://...): each worker name is a "
    "hosting machine id and mines for the customer its assignment names; others are refused.",
)
@click.option(
    "--hosting-every",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="With --hosting-db: seconds between reads of the assignments.",
)
@click.option("--stats-listen", default=None, help="HOST:PORT for GET /stats (JSON); default: off.")
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
@click.pass_context
def proxy(
    ctx: click.Context,
    listen: str,
    upstream: str | None,
    user: str | None,
    per_customer: bool,
    upstream_user_template: str | None,
    max_upstreams: int,
    stats_db: Path | None,
    hosting_db: str | None,
    hosting_every: float,
    stats_listen: str | None,
    password: str,
    backup: str | None,
    prefix_bytes: int,
    allow: tuple[str, ...],
    stats_every: float,
    log_level: str,
) -> None:
    """Run the farm proxy until SIGINT/SIGTERM."""
    if ctx.invoked_subcommand is not None:
        return
    if upstream is None:
        raise click.UsageError("--upstream is required")
    if per_customer:
        if upstream_user_template is None:
            raise click.UsageError("--per-customer needs --upstream-user-template")
        try:
            upstream_user_template.format(customer="c")
        except (KeyError, IndexError, ValueError) as exc:
            raise click.UsageError(f"bad --upstream-user-template: {exc}") from None
        if "{customer}" not in upstream_user_template:
            raise click.UsageError("--upstream-user-template must contain {customer}")
    elif user is None:
        raise click.UsageError("--user is required (or --per-customer)")
    host, port = parse_listen(listen)
    customers = None
    if hosting_db is not None:
        try:
            customers = read_customers(hosting_db)
        except HashfarmError as exc:
            raise click.ClickException(f"--hosting-db: {exc}") from None
        click.echo(
            f"hosting: {len(customers)} machines assigned to "
            f"{len(set(customers.values()))} customers now"
        )
    stats_at = parse_listen(stats_listen) if stats_listen else None
    try:
        settings = ProxySettings(
            Upstream.parse(upstream), user or "", password,
            backup=Upstream.parse(backup) if backup else None,
            host=host, port=port, prefix_size=prefix_bytes,
            allowed_workers=frozenset(allow) if allow else None,
            per_customer=per_customer,
            user_template=upstream_user_template or "{customer}",
            max_upstreams=max_upstreams, customers=customers,
        )  # fmt: skip
    except StratumError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        asyncio.run(
            serve(
                settings, stats_every, stats_db=stats_db, stats_at=stats_at,
                hosting=(hosting_db, hosting_every) if hosting_db is not None else None,
            )
        )  # fmt: skip
    except (HashfarmError, TimeoutError, OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"proxy: {exc}") from None


async def serve(
    settings: ProxySettings,
    stats_every: float,
    stop: asyncio.Event | None = None,
    *,
    stats_db: Path | None = None,
    stats_at: tuple[str, int] | None = None,
    hosting: tuple[str, float] | None = None,
) -> None:
    """Start the proxy, log its stats periodically, stop on `stop` or a signal."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    store = WorkStore(stats_db) if stats_db is not None else None
    proxy = Proxy(settings, store)
    await proxy.start()
    click.echo(f"proxy listening on {settings.host}:{proxy.port}, upstream {settings.upstream}")
    reload = None
    if hosting is not None:
        reload = asyncio.create_task(keep_reading(*hosting, proxy.set_customers))
    runner = None
    if stats_at is not None:
        runner, bound = await start_stats(proxy, *stats_at)
        click.echo(f"stats on http://{stats_at[0]}:{bound}/stats")
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(stats_every):
                    await stop.wait()
            log.info("stats %s", orjson.dumps(proxy.stats_dict()).decode())
    finally:
        if reload is not None:
            reload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reload
        if runner is not None:
            await runner.cleanup()
        await proxy.stop()
        if store is not None:
            store.close()


@proxy.command("export-work")
@click.option(
    "--stats-db",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The proxy's --stats-db file.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV to write."
)
def export_work(stats_db: Path, out: Path) -> None:
    """Write the stored accepted work as `machine_id,day,work` (for `farm report --work`)."""
    try:
        store = WorkStore(stats_db)
        try:
            rows = store.rows()
        finally:
            store.close()
    except sqlite3.Error as exc:
        raise click.ClickException(f"{stats_db}: {exc}") from None
    out.write_text(work_csv(rows))
    click.echo(f"{len(rows)} rows (machine, day) written to {out}")
