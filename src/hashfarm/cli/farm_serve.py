"""`hashfarm farm serve`: the hosting farm's HTTP API (admin routes) until SIGINT or SIGTERM.

    hashfarm farm serve --admin-token-file FILE [--listen 127.0.0.1:8090] [--db URL]
                        [--samples FILE | --fleet-db URL] [--mined FILE] [--prices FILE]
                        [--curtailment FILE] [--work FILE --network FILE]

Serves `api/hosting.py`'s routes (customers, invoices, bill runs, issue/pay and the farm
report), all behind the admin token. Bill runs read the power samples (`--samples` or the
fleet poller's `--fleet-db`), `--mined`, `--prices` and `--curtailment` as `hashfarm bill run`
does; without a power source they answer 503. The report reads `--mined` (or `--work` with
`--network`) and `--prices` as `hashfarm farm report` does, through the same `reports`
function, so its JSON is the CLI's. The input files are read once, at start. Customers' bills
are private: it binds 127.0.0.1 by default and warns when told to listen anywhere else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from pathlib import Path

import click
from aiohttp import web

from hashfarm.api.admin import load_admin_token
from hashfarm.api.hosting import HostingSource, ReportSource, make_hosting_app
from hashfarm.cli.hosting import checked, db_option, open_store
from hashfarm.hosting import billing
from hashfarm.hosting.inputs import (
    parse_curtailment_csv,
    parse_mined_csv,
    parse_prices_csv,
    parse_samples_csv,
    read_text,
)
from hashfarm.hosting.power import PowerSource
from hashfarm.hosting.promise import WorkMined, parse_network_csv, parse_work_csv
from hashfarm.hosting.sources import (
    CurtailmentWindows,
    DailyMined,
    DailyPrices,
    MinedSats,
    SeriesPowerSource,
)

log = logging.getLogger("hashfarm.cli.farm_serve")

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[v6]:PORT` for IPv6) as (host, port); port 0 asks for an ephemeral one."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"{text!r} is not HOST:PORT", param_hint="--listen")
    return host, int(port)


def exposure_hint(host: str) -> str | None:
    """A warning when the admin routes would be reachable from other machines."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: cannot tell without resolving it
        loopback = False
    if loopback:
        return None
    return (
        f"the farm API listens on {host}: customers' bills and the bill runs are one leaked "
        "admin token away from anyone who can reach it; keep it on 127.0.0.1 behind a "
        "TLS proxy (docs/security.md)"
    )


def _read(path: Path, what: str) -> str:
    return read_text(path.read_bytes(), what)


@click.command("serve")
@click.option("--listen", default="127.0.0.1:8090", show_default=True, metavar="HOST:PORT",
              help="Where to listen (port 0: any free one, printed at start).")  # fmt: skip
@click.option("--admin-token-file", required=True, type=_FILE,
              help="A file holding the admin token (Authorization: Bearer TOKEN).")  # fmt: skip
@click.option("--samples", type=_FILE, help="Power samples: machine_id,time,watts,state.")
@click.option("--fleet-db", metavar="URL", help="Or: the fleet poller's store (its rollups).")
@click.option("--fleet-resolution", type=click.Choice(["300", "3600"]), default="3600",
              show_default=True, help="Which fleet rollups to read, seconds.")  # fmt: skip
@click.option("--mined", type=_FILE, help="Mined satoshis: machine_id,day,sats.")
@click.option("--work", type=_FILE, help="Or, for the report: machine_id,day,work.")
@click.option("--network", type=_FILE, help="With --work: day,difficulty,reward_sats.")
@click.option("--prices", type=_FILE, help="BTC prices: day,btc_usd.")
@click.option("--curtailment", type=_FILE, help="Farm switch-offs: machine_id,start,end.")
@click.option("--max-hold", default=billing.DEFAULT_MAX_HOLD_S, show_default=True, type=int,
              help="Seconds a power sample speaks for (no data after).")  # fmt: skip
@db_option
def farm_serve(listen: str, admin_token_file: Path, samples: Path | None, fleet_db: str | None,
               fleet_resolution: str, mined: Path | None, work: Path | None,
               network: Path | None, prices: Path | None, curtailment: Path | None,
               max_hold: int, db: str) -> None:  # fmt: skip
    """Serve the farm's HTTP API (customers, invoices, bill runs, the report) until stopped."""
    from hashfarm.cli.farm import reports  # cli.farm registers this command: import it late

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, port = parse_listen(listen)
    if samples is not None and fleet_db is not None:
        raise click.UsageError("give one of --samples FILE.csv or --fleet-db URL, not both")
    if work is not None and mined is not None:
        raise click.UsageError("give one of --mined or --work (with --network)")
    if (work is None) != (network is None):
        raise click.UsageError("--work and --network go together")
    token = checked(lambda: load_admin_token(str(admin_token_file)))
    with open_store(db):  # fail at start, with the CLI's message, when the database is unusable
        pass
    mined_src = price_src = off = None
    if mined is not None:
        mined_src = DailyMined(checked(lambda: parse_mined_csv(_read(mined, "mined sats"))))
    if prices is not None:
        price_src = DailyPrices(checked(lambda: parse_prices_csv(_read(prices, "BTC prices"))))
    if curtailment is not None:
        windows = checked(lambda: parse_curtailment_csv(_read(curtailment, "curtailment")))
        off = CurtailmentWindows(windows)
    report = None
    report_mined: MinedSats | None = mined_src
    earned_from = "mined satoshis (--mined)"
    if work is not None and network is not None:
        report_mined = WorkMined(
            checked(lambda: parse_work_csv(_read(work, "accepted work"))),
            checked(lambda: parse_network_csv(_read(network, "network"))),
        )
        earned_from = "accepted work x each day's hashprice (--work, --network)"
    if report_mined is not None and price_src is not None:
        report = ReportSource(reports, report_mined, price_src, earned_from)
    fleet = None
    power: PowerSource | None = None
    if samples is not None:
        power = SeriesPowerSource(checked(lambda: parse_samples_csv(_read(samples, "samples"))))
    elif fleet_db is not None:
        from hashfarm.cli.hosting_fleet import FleetPowerSource
        from hashfarm.fleet.store import connect as fleet_connect

        fleet = checked(lambda: fleet_connect(fleet_db))
        power = FleetPowerSource(fleet, int(fleet_resolution))
    source = HostingSource(db, power=power, mined=mined_src, prices=price_src, curtailment=off,
                           max_hold_s=max_hold, report=report)  # fmt: skip
    hint = exposure_hint(host)
    if hint is not None:
        log.warning("%s", hint)
    try:
        asyncio.run(_serve(source, token, host, port))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {listen}: {exc}") from None
    finally:
        if fleet is not None:
            fleet.close()


async def _serve(source: HostingSource, token: bytes | None, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_hosting_app(source, token), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1]
        off = [what for what, on in (("bill runs", source.power), ("the report", source.report))
               if on is None]  # fmt: skip
        note = f"; off: {', '.join(off)}" if off else ""
        click.echo(f"farm API on http://{host}:{bound}/api/admin/hosting/ (admin token){note}")
        await stop.wait()
        click.echo("stopping")
    finally:
        await runner.cleanup()


__all__ = ["exposure_hint", "farm_serve", "parse_listen"]
