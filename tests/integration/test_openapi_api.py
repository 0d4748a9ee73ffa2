"""The OpenAPI description against the real app: every JSON route is described, and a
schemathesis run (its command line, as a user runs it) over the whole API on a socket finds
every answer conforming to the description and no 500.

Behind the app: a real pool on the regtest node with a worker that has mined shares, its
SQLite ledger (read by the accounting routes), a fleet store polled from replayed machines on
loopback, and the hosting month's database (hosting_month.py), so every route has data."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import aiohttp
import hosting_month as sc
import pytest
from aiohttp import web

from fleet_replay import ReplayFarm, s19pro
from hashfarm.api import accounts, openapi
from hashfarm.api.hosting import HostingSource, ReportSource
from hashfarm.api.readmodel import ReadModel
from hashfarm.api.server import MODEL_KEY, make_app
from hashfarm.cli.farm import reports
from hashfarm.cli.pool import running_pool
from hashfarm.fleet.poller import Machine, Poller, PollSettings
from hashfarm.fleet.store import FleetStore, open_fleet_store
from hashfarm.hosting.inputs import parse_meter_csv
from hashfarm.hosting.sources import DailyPrices
from hashfarm.hosting.store import connect
from hashfarm.node.bcoin import free_port
from hashfarm.pool.settings import (
    HttpSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
    StratumSettings,
    VardiffSettings,
)
from nodes import RegtestNode
from unit.pool.stratum_client import StratumTestMiner

TOKEN = "openapi-admin-token-0123456789abcdef"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = 8  # generated cases per operation and phase: the run stays well under a minute


async def polled_fleet(path: Path) -> FleetStore:
    """A fleet store holding two polls of one replayed S19 Pro on loopback."""
    store = await open_fleet_store(f"sqlite:///{path}")
    async with ReplayFarm() as farm:
        await farm.add(1, "cgminer", s19pro())
        poller = Poller([Machine(f"{farm.prefix}.1", farm.cgminer_port, "bmminer")],
                        PollSettings(timeout_s=0.5), sinks=[store])  # fmt: skip
        await poller.poll_round()
        await poller.poll_round()
        await poller.close()
    return store


def hosting_db(path: Path) -> str:
    db = f"sqlite:///{path}"
    store = connect(db)
    try:
        sc.set_up(store, parse_meter_csv(sc.METER_CSV))
    finally:
        store.close()
    return db


@contextlib.asynccontextmanager
async def full_api(model: ReadModel, ledger_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """Every route of the API (pool, accounting, fleet, hosting, calculator, admin) over
    `model` on 127.0.0.1; yields the base URL."""
    fleet = await polled_fleet(tmp_path / "fleet.sqlite3")
    source = accounts.AccountsSource(ledger_url)
    prices = DailyPrices({sc.T0 + d * 86_400: Fraction(90_000) for d in range(30)})
    report = ReportSource(reports, sc.mined(), prices, "mined satoshis (hosting_month.py)")
    hosting = HostingSource(hosting_db(tmp_path / "hosting.sqlite3"), power=sc.power(),
                            mined=sc.mined(), clock=lambda: float(sc.NOW),
                            report=report)  # fmt: skip
    app = make_app(model, TOKEN.encode(), source, fleet_store=fleet, hosting_store=hosting)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await source.close()
        await fleet.close()


# The miner page takes any printable user name (Unicode, as the pool does), which a JSON
# Schema pattern cannot state: the description gives the ASCII part, so a schema-violating
# name the route rightly accepts (an unknown miner: 200, "seen": false) is no failure there.
CONFIG = """
[[operations]]
include-path = "/api/miners/{address}"
checks.negative_data_rejection.enabled = false
"""


def write_config(report: Path) -> Path:
    report.mkdir(parents=True, exist_ok=True)
    config = report / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    return config


async def run_schemathesis(base: str, report: Path, *extra: str) -> tuple[int, str]:
    """The schemathesis command line over the served description; (exit status, output)."""
    config = write_config(report)
    args = [
        "--config-file", str(config),
        "run", f"{base}/api/openapi.json",
        "--checks", "all",
        "--max-examples", str(EXAMPLES),
        "--seed", "13",
        "--workers", "1",
        "--request-timeout", "20",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--report", "junit", "--report-dir", str(report),
        "--no-color",
        *extra,
    ]  # fmt: skip
    env = os.environ | {"SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env, cwd=report,  # its .schemathesis/ cache
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    return proc.returncode or 0, out.decode(errors="replace")


def described_operations() -> set[tuple[str, str]]:
    doc = openapi.document()
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every JSON/metrics route the app registers."""
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "*") or not path.startswith(("/api/", "/metrics", "/health")):
            continue
        out.add((route.method, path))
    return out


async def test_every_json_route_is_described(tmp_path: Path) -> None:
    fleet = await open_fleet_store(f"sqlite:///{tmp_path / 'fleet.sqlite3'}")
    hosting = HostingSource(hosting_db(tmp_path / "hosting.sqlite3"))
    model = ReadModel(None, None, None, None)  # type: ignore[arg-type]  # routes only
    try:
        app = make_app(model, TOKEN.encode(), fleet_store=fleet, hosting_store=hosting)
        assert served_operations(app) == described_operations()
        assert app[MODEL_KEY] is model
    finally:
        await fleet.close()


@pytest.mark.node
async def test_schemathesis_finds_the_api_conforming(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'pool.sqlite3'}"
    settings = PoolSettings(
        node=NodeSettings(rpc_url=regtest_node.rpc_url, rpc_password=regtest_node.api_key),
        stratum=StratumSettings(port=0, raise_nofile=False),
        vardiff=VardiffSettings(initial=1e-11, enabled=False),
        storage=StorageSettings(url=ledger_url),
        http=HttpSettings(port=free_port()),
    )
    address = await regtest_node.payout_address()
    async with running_pool(settings) as running:
        miner = StratumTestMiner(running.pool.stratum_port, f"{address}.openapi")
        await miner.connect()
        await miner.start()
        for _ in range(3):
            assert (await miner.mine_share()).response.result is True
        await miner.close()
        assert running.api is not None
        model = running.api._runner.app[MODEL_KEY]
        async with full_api(model, ledger_url, tmp_path) as base:
            async with aiohttp.ClientSession() as http, http.get(f"{base}/api/workers") as r:
                assert [w["name"] for w in (await r.json())["workers"]] == [f"{address}.openapi"]
            rc, out = await run_schemathesis(base, tmp_path / "schemathesis")
    assert rc == 0, out[-6000:]
    assert "No issues found" in out or "passed" in out, out[-3000:]
    assert list((tmp_path / "schemathesis").glob("*.xml")), "the junit report is kept"
