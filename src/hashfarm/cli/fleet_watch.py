"""`hashfarm fleet scan|status|watch`: find the machines, show them, watch them.

    hashfarm fleet scan CIDR [--port 4028] [--http-port 80] [--store URL] [--json]
    hashfarm fleet status [--store URL] [--json]
    hashfarm fleet watch [CIDR] [--store URL] [--interval 30] [--webhook URL]
                         [--api-port N] [--rounds N]

`scan` probes a range and prints what answers (with `--store`, the machines join the
inventory there). `status` prints the latest state the store holds, worst first. `watch`
polls the inventory (after scanning CIDR, if given) every `--interval` seconds into the
store, raises alerts (log, `--webhook`, the API), serves `/api/fleet/*` and `/metrics` on
`--api-port`, and keeps a live table sorted by what is wrong. Errors exit 1 with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import orjson
from aiohttp import web
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hashfarm.api.fleet import machine_rank, make_fleet_app
from hashfarm.errors import HashfarmError
from hashfarm.fleet.alerts import (
    AlertEngine,
    AlertService,
    AlertSink,
    LogSink,
    WebhookSink,
)
from hashfarm.fleet.poller import Poller, Round
from hashfarm.fleet.scan import ScanResult, ScanSettings, scan
from hashfarm.fleet.settings import FleetSettings, load_fleet_settings
from hashfarm.fleet.store import (
    SQLITE_PREFIX,
    FleetSql,
    FleetStore,
    connect,
    open_fleet_store,
)
from hashfarm.units import format_hashrate

__all__ = ["COMMANDS", "machine_table", "scan_command", "status", "watch"]

DEFAULT_STORE = "sqlite:///hashfarm-fleet.db"
log = logging.getLogger("hashfarm.cli.fleet")

_store = click.option("--store", "store_url", default=DEFAULT_STORE, show_default=True,
                      help="Fleet store: sqlite:///PATH or postgresql://...")  # fmt: skip
_port = click.option("--port", default=4028, show_default=True, help="cgminer API port.")
_http_port = click.option("--http-port", default=80, show_default=True,
                          help="AxeOS / Braiins REST port (0: no HTTP probe).")  # fmt: skip


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _ago(at: float | None, now: float) -> str:
    return "never" if at is None else f"{max(0.0, now - at):.0f} s ago"


def machine_table(rows: Sequence[dict[str, Any]], now: float, title: str = "fleet") -> Table:
    """The machines, worst first: failing polls, then most faults, then healthy."""
    table = Table(title=title)
    for name, justify in (
        ("machine", "left"),
        ("model", "left"),
        ("hashrate", "right"),
        ("of nominal", "right"),
        ("chip °C", "right"),
        ("fan rpm", "right"),
        ("boards", "right"),
        ("what is wrong", "left"),
        ("polled", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]  # fmt: skip
    for r in sorted(rows, key=machine_rank):
        live, nominal = r.get("live_hs"), r.get("nominal_hs")
        share = f"{live / nominal:.0%}" if live is not None and nominal else "-"
        boards = (f"{r['boards_present']}/{r['boards_expected'] or '?'}"
                  if r.get("boards_present") is not None else "-")  # fmt: skip
        wrong = r.get("error") or (r.get("faults") or "").replace(",", ", ") or "ok"
        style = "red" if r.get("error") else ("yellow" if r.get("faults") else "green")
        table.add_row(
            str(r["id"]), r.get("model") or "?",
            format_hashrate(live) if live is not None else "-", share,
            f"{r['chip_temp_max_c']:g}" if r.get("chip_temp_max_c") is not None else "-",
            str(r["fan_min_rpm"]) if r.get("fan_min_rpm") is not None else "-",
            boards, f"[{style}]{wrong}[/]", _ago(r.get("last_at"), now),
        )  # fmt: skip
    return table


def _scan_json(result: ScanResult) -> dict[str, Any]:
    return {
        "found": [{"id": f.address, "host": f.host, "port": f.port, "backend": f.backend,
                   "model": f.model, "firmware": f.firmware} for f in result.found],
        "errors": [{"host": e.host, "port": e.port, "reason": e.reason} for e in result.errors],
        "dead": result.dead, "other": result.other, "scanned": result.scanned,
        "not_reached": result.not_reached,
        "elapsed_s": round(result.elapsed_s, 3),
    }  # fmt: skip


@click.command("scan")
@click.argument("cidr")
@_port
@_http_port
@click.option("--timeout", default=3.0, show_default=True, help="Seconds per probe.")
@click.option("--concurrency", default=ScanSettings().concurrency, show_default=True)
@click.option("--store", "store_url", default=None, help="Add what is found to this store.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def scan_command(cidr: str, port: int, http_port: int, timeout: float, concurrency: int,
                 store_url: str | None, as_json: bool) -> None:  # fmt: skip
    """Find the mining machines in CIDR and say what each one is."""
    try:
        settings = ScanSettings(cgminer_port=port, http_port=http_port, probe_timeout_s=timeout,
                                concurrency=concurrency)  # fmt: skip
        result = asyncio.run(scan(cidr, settings))
        if store_url:
            sql = connect(store_url)
            try:
                sql.register(result.found, time.time())
            finally:
                sql.close()
    except HashfarmError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(orjson.dumps(_scan_json(result), option=orjson.OPT_INDENT_2).decode())
        return
    console = Console()
    table = Table(title=f"{cidr}: {len(result.found)} machines")
    for name in ("machine", "backend", "model", "firmware"):
        table.add_column(name)
    for f in result.found:
        table.add_row(f.address, f.backend, f.model or "?", f.firmware or "?")
    console.print(table)
    for e in result.errors:
        console.print(f"[red]{e.host}:{e.port}[/] {e.reason}" if e.port else
                      f"[red]{e.host}[/] {e.reason}")  # fmt: skip
    late = f", {result.not_reached} not reached" if result.not_reached else ""
    console.print(f"{result.scanned} addresses in {result.elapsed_s:.2f} s: "
                  f"{len(result.found)} machines, {len(result.errors)} errors, "
                  f"{result.dead} silent, {result.other} other web servers{late}")  # fmt: skip


@click.command()
@_store
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(store_url: str, as_json: bool) -> None:
    """The latest state of every machine in the store, worst first."""
    path = store_url[len(SQLITE_PREFIX) :] if store_url.startswith(SQLITE_PREFIX) else None
    if path is not None and not Path(path).is_file():
        raise click.ClickException(
            f"no fleet store at {path} (run `hashfarm fleet scan CIDR --store URL` first)"
        )
    try:
        sql = connect(store_url)
        try:
            rows = sql.machines()
            alerts = sql.alerts(active_only=True, limit=1000)
        finally:
            sql.close()
    except HashfarmError as exc:
        raise _fail(exc) from None
    rows.sort(key=machine_rank)
    if as_json:
        doc = {"machines": rows, "alerts": [a.as_json() for a in alerts]}
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    console = Console()
    console.print(machine_table(rows, time.time(), f"{len(rows)} machines"))
    for a in alerts:
        since = dt.datetime.fromtimestamp(a.raised_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        board = f" board {a.board}" if a.board is not None else ""
        console.print(f"[bold]{a.severity}[/] {a.machine_id} {a.kind}{board}: {a.detail} "
                      f"(since {since} UTC)")  # fmt: skip


async def _watch(cfg: FleetSettings, cidr: str | None, api: tuple[str, int] | None,
                 rounds: int | None) -> None:  # fmt: skip
    store: FleetStore = await open_fleet_store(cfg.store, cfg.retention)
    runner: web.AppRunner | None = None
    sinks: list[AlertSink] = [LogSink()]
    webhook = WebhookSink(cfg.webhook_url) if cfg.webhook_url else None
    if webhook is not None:
        sinks.append(webhook)
    try:
        if cidr:
            found = await scan(cidr, cfg.scan)
            await store.call(lambda sql: sql.register(found.found, time.time()))
        machines = await store.call(FleetSql.inventory)
        if not machines:
            raise click.ClickException("no machines to watch: scan a range first (CIDR)")
        engine = AlertEngine(cfg.alerts)
        known = {m.id for m in machines}
        left = await store.call(lambda sql: sql.alerts(active_only=True, limit=100_000))
        engine.restore(a for a in left if a.machine_id in known)  # no second page for them
        if api is not None:
            runner = web.AppRunner(make_fleet_app(store), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, *api).start()
        console = Console()
        with Live(console=console, auto_refresh=False) as live:

            async def show(r: Round) -> None:
                rows = await store.call(FleetSql.machines)
                title = (f"{len(rows)} machines, round at "
                         f"{dt.datetime.fromtimestamp(r.at, dt.UTC):%H:%M:%S} UTC: "
                         f"{r.errors} without a reply, {r.duration_s:.1f} s")  # fmt: skip
                live.update(machine_table(rows, time.time(), title), refresh=True)

            alerts = AlertService(engine, recorder=store, sinks=sinks)
            poller = Poller(machines, cfg.poll, thresholds=cfg.faults,
                            sinks=[store, alerts, show])  # fmt: skip
            await poller.run(rounds=rounds)
    finally:
        if webhook is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(webhook.drain(), 10)
            await webhook.close()
        if runner is not None:
            await runner.cleanup()
        await store.close()


@click.command()
@click.argument("cidr", required=False)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Fleet settings file (TOML; see hashfarm.fleet.settings).",
)
@click.option("--store", default=None, help=f"Fleet store URL [default: {DEFAULT_STORE}].")
@click.option("--port", type=int, default=None, help="cgminer API port [default: 4028].")
@click.option("--http-port", type=int, default=None, help="AxeOS / Braiins port [default: 80].")
@click.option("--interval", type=float, default=None, help="Seconds between polls [30].")
@click.option("--timeout", type=float, default=None, help="Seconds per machine poll [5].")
@click.option("--webhook", default=None, help="POST alerts as JSON to this URL.")
@click.option(
    "--raise-after",
    type=int,
    default=None,
    help="Polls showing a fault before it alerts [2] (overheating: at once).",
)
@click.option(
    "--clear-after", type=int, default=None, help="Polls without it before the alert clears [3]."
)
@click.option(
    "--repage", type=float, default=None, help="Seconds before the same alert pages again [3600]."
)
@click.option("--api-port", type=int, default=None, help="Serve /api/fleet/* and /metrics.")
@click.option("--api-host", default="127.0.0.1", show_default=True)
@click.option("--rounds", type=int, default=None, help="Stop after N rounds (default: never).")
def watch(cidr: str | None, config_file: str | None, api_port: int | None, api_host: str,
          rounds: int | None, **flags: Any) -> None:  # fmt: skip
    """Poll the machines every --interval seconds, store, alert, and show them live.

    Settings: --config FILE < HASHFARM_FLEET_* environment < these flags."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    dotted = {"store": "store", "port": "scan.cgminer_port", "http_port": "scan.http_port",
              "interval": "poll.interval_s", "timeout": "poll.timeout_s",
              "webhook": "webhook_url", "raise_after": "alerts.raise_after",
              "clear_after": "alerts.clear_after", "repage": "alerts.repage_s"}  # fmt: skip
    try:
        cfg = load_fleet_settings(config_file, flags={dotted[k]: v for k, v in flags.items()})
        api = (api_host, api_port) if api_port is not None else None
        asyncio.run(_watch(cfg, cidr, api, rounds))
    except KeyboardInterrupt:
        pass
    except (HashfarmError, OSError) as exc:
        raise _fail(exc) from None


COMMANDS = (scan_command, status, watch)
