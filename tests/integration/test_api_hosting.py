"""The hosting routes over real HTTP on 127.0.0.1, over a real SQLite hosting store filled
with the month of hosting_month.py through the hosting package's own functions: the bill run
started by POST (and idempotent), invoices whose figures equal what `hashfarm bill show
--json` and `bill export --format csv` give for the same database, the lifecycle (illegal
transitions 409), refusals without the admin token, and strict parameters (400, never 500)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import hosting_month as sc
import pytest
from aiohttp import web
from click.testing import CliRunner

from hashfarm.api.hosting import HostingSource
from hashfarm.api.readmodel import ReadModel
from hashfarm.api.server import make_app
from hashfarm.cli.main import cli
from hashfarm.hosting.inputs import parse_meter_csv
from hashfarm.hosting.money import parse_cents
from hashfarm.hosting.period import parse_time
from hashfarm.hosting.power import SampleSeries, State
from hashfarm.hosting.sources import SeriesPowerSource
from hashfarm.hosting.store import connect
from hashfarm.pool.stats import PoolStats

TOKEN = "hosting-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
H = "/api/admin/hosting"


@dataclass
class Api:
    base: str
    db: str
    http: aiohttp.ClientSession
    clock: list[float]

    async def get(self, path: str, headers: dict[str, str] | None = AUTH) -> tuple[int, Any]:
        async with self.http.get(self.base + path, headers=headers) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    async def post(self, path: str, body: object = None, raw: bytes | None = None,
                   headers: dict[str, str] | None = AUTH) -> tuple[int, Any]:  # fmt: skip
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        async with self.http.post(self.base + path, data=data, headers=headers) as resp:
            return resp.status, await resp.json()


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def _model() -> ReadModel:
    return ReadModel(None, None, PoolStats(), None)  # type: ignore[arg-type]  # not read here


def _filled(tmp_path: Path) -> str:
    db = f"sqlite:///{tmp_path / 'hosting.sqlite3'}"
    store = connect(db)
    try:
        sc.set_up(store, parse_meter_csv(sc.METER_CSV))
    finally:
        store.close()
    return db


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    db = _filled(tmp_path)
    clock = [float(sc.NOW)]
    source = HostingSource(db, power=sc.power(), mined=sc.mined(), clock=lambda: clock[0])
    runner, base = await _serve(make_app(_model(), TOKEN.encode(), hosting_store=source))
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(base, db, http, clock)
    finally:
        await runner.cleanup()


def _hf(db: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--db", db], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_a_bill_run_by_post_gives_the_figures_the_cli_shows(api: Api, tmp_path: Path) -> None:
    status, run = await api.post(f"{H}/bill-runs", {"period": "2026-11"})
    assert status == 200, run
    assert run == {"period": "2026-11", "written": ["alpha", "beta", "gamma"], "unchanged": [],
                   "closed": [], "errors": {}}  # fmt: skip
    status, again = await api.post(f"{H}/bill-runs", {"period": "2026-11"})
    assert (status, again["written"], again["unchanged"]) == (200, [], ["alpha", "beta", "gamma"])

    status, listed = await api.get(f"{H}/invoices?period=2026-11")
    assert status == 200
    totals = {r["number"]: (r["total_cents"], r["total_sats"]) for r in listed["invoices"]}
    assert totals == {  # worked out by hand in test_hosting_month.py
        "INV-2026-11-alpha-1": (24277, 0),
        "INV-2026-11-beta-1": (11472, 0),
        "INV-2026-11-gamma-1": (500, 55552),
    }
    status, betas = await api.get(f"{H}/invoices?customer=beta")
    assert [r["number"] for r in betas["invoices"]] == ["INV-2026-11-beta-1"]
    status, none = await api.get(f"{H}/invoices?period=2026-10")
    assert (status, none) == (200, {"invoices": []})

    for number in totals:
        status, doc = await api.get(f"{H}/invoices/{number}")
        assert status == 200
        cli_doc = json.loads(_hf(api.db, "bill", "show", number, "--json"))
        assert (
            doc["total_cents"]
            == parse_cents(cli_doc["total"])
            == sum(x["cents"] for x in doc["lines"])
        )
        assert doc["total_sats"] == cli_doc["sats"]
        assert (doc["state"], doc["customer"]) == (cli_doc["state"], cli_doc["customer"])
        stored = cli_doc["document"]
        assert [(x["kind"], x["machine"], x["cents"], x["sats"]) for x in doc["lines"]] == [
            (x["kind"], x["machine_id"], x["cents"], x["sats"]) for x in stored["lines"]
        ]
        for ours, theirs in zip(doc["lines"], stored["lines"], strict=True):
            assert Fraction(ours["quantity"]) == Fraction(theirs["quantity"])
            assert Fraction(ours["unit_price"]) == Fraction(theirs["unit_price"])
        for ours, theirs in zip(doc["usage"], stored["usage"], strict=True):
            for key in ("billed_kwh", "calculated_kwh"):
                assert isinstance(ours[key], str)
                assert Fraction(ours[key]) == Fraction(theirs[key])
        assert all(isinstance(x["cents"], int) for x in doc["lines"])

        status, text = await api.get(f"{H}/invoices/{number}.csv")
        assert status == 200
        out = tmp_path / f"{number}.csv"
        _hf(api.db, "bill", "export", number, "--format", "csv", "-o", str(out))
        assert text == out.read_text()

    status, beta = await api.get(f"{H}/invoices/INV-2026-11-beta-1")
    m2 = next(u for u in beta["usage"] if u["machine"] == "m2")
    assert (m2["metered_kwh"], m2["variance_kwh"]) == ("2300", "68")  # as `bill show` says

    status, customers = await api.get(f"{H}/customers")
    assert [c["id"] for c in customers["customers"]] == ["alpha", "beta", "gamma"]
    status, beta_c = await api.get(f"{H}/customers/beta")
    cli_c = json.loads(_hf(api.db, "customer", "show", "beta", "--json"))
    assert beta_c["prepaid_available_cents"] == parse_cents(cli_c["prepaid_available"])
    assert [k["id"] for k in beta_c["contracts"]] == ["beta-me"]
    assert [a["machine"] for a in beta_c["assignments"]] == ["m2", "m4"]
    assert [i["number"] for i in beta_c["invoices"]] == ["INV-2026-11-beta-1"]


async def test_the_lifecycle_allows_legal_transitions_only(api: Api) -> None:
    await api.post(f"{H}/bill-runs", {"period": "2026-11"})
    number = "INV-2026-11-alpha-1"
    status, doc = await api.post(f"{H}/invoices/{number}/pay")
    assert status == 409
    assert "cannot become paid" in doc["error"]
    api.clock[0] = parse_time("2026-12-01T10:00:00Z")
    status, doc = await api.post(f"{H}/invoices/{number}/issue")
    assert (status, doc["state"], doc["due_at"]) == (200, "issued", "2026-12-16T10:00:00Z")
    status, doc = await api.post(f"{H}/invoices/{number}/issue")
    assert status == 409
    assert "cannot become issued" in doc["error"]
    status, doc = await api.post(f"{H}/invoices/{number}/pay")
    assert (status, doc["state"]) == (200, "paid")
    # a closed invoice is never recomputed by a later run
    status, run = await api.post(f"{H}/bill-runs", {"period": "2026-11"})
    assert run["closed"] == ["alpha"]
    assert json.loads(_hf(api.db, "bill", "show", number, "--json"))["state"] == "paid"
    status, doc = await api.post(f"{H}/invoices/INV-2026-11-nobody-1/issue")
    assert status == 404
    # a running month's draft cannot be issued (an estimate): 409 too
    api.clock[0] = parse_time("2026-11-20")
    status, doc = await api.post(f"{H}/invoices/INV-2026-11-beta-1/issue")
    assert status == 409
    assert "has not ended" in doc["error"]


async def test_without_the_token_nothing_is_shown_or_changed(api: Api, tmp_path: Path) -> None:
    routes = [("get", f"{H}/customers"), ("get", f"{H}/customers/alpha"),
              ("get", f"{H}/invoices"), ("get", f"{H}/invoices/INV-2026-11-alpha-1"),
              ("get", f"{H}/invoices/INV-2026-11-alpha-1.csv"),
              ("post", f"{H}/bill-runs"), ("post", f"{H}/invoices/INV-2026-11-alpha-1/issue"),
              ("post", f"{H}/invoices/INV-2026-11-alpha-1/pay")]  # fmt: skip
    wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    for method, path in routes:
        for headers in (None, wrong, {"Authorization": f"Basic {TOKEN}"}):
            if method == "get":
                status, doc = await api.get(path, headers=headers)
            else:
                status, doc = await api.post(path, {"period": "2026-11"}, headers=headers)
            assert status == 401, (path, doc)
            assert "admin token" in doc["error"]
    assert _hf(api.db, "bill", "list").strip() == "(none)"  # no run happened

    # no token configured at all: 403, saying how to turn the routes on
    source = HostingSource(api.db, power=sc.power())
    runner, base = await _serve(make_app(_model(), None, hosting_store=source))
    try:
        async with api.http.get(f"{base}{H}/customers", headers=AUTH) as resp:
            assert resp.status == 403
            assert "admin_token_file" in (await resp.json())["error"]
    finally:
        await runner.cleanup()


async def test_bad_parameters_are_400_and_unknown_things_404(api: Api) -> None:
    for query in ("period=2026-13", "period=26-11", "period=2026-1%C2%B2", "customer=a%20b",
                  "colour=red", "period=2026-11&period=2026-10", "customer="):  # fmt: skip
        status, doc = await api.get(f"{H}/invoices?{query}")
        assert status == 400, (query, doc)
        assert doc["error"]
    status, doc = await api.get(f"{H}/customers?x=1")
    assert status == 400
    for body in ({}, {"period": 202611}, {"period": "2026-00"}, {"period": "2026-11", "x": 1},
                 ["2026-11"], {"period": None}):  # fmt: skip
        status, doc = await api.post(f"{H}/bill-runs", body)
        assert status == 400, (body, doc)
    for raw in (b"", b"{", b"\xff\xfe", b"null"):
        status, doc = await api.post(f"{H}/bill-runs", raw=raw)
        assert status == 400, (raw, doc)
    status, doc = await api.post(f"{H}/invoices/INV-2026-11-alpha-1/issue", {"now": 1})
    assert status == 400
    status, doc = await api.post(f"{H}/invoices/{'X' * 200}/pay")
    assert status == 400
    assert (await api.get(f"{H}/customers/nobody"))[0] == 404
    assert (await api.get(f"{H}/invoices/INV-2026-11-alpha-1"))[0] == 404  # not run yet
    assert (await api.get(f"{H}/invoices/INV-2026-11-alpha-1.csv"))[0] == 404
    assert (await api.get(f"{H}/nothing"))[0] == 404
    status, doc = await api.get(f"{H}/bill-runs")
    assert status == 405


async def test_a_bill_run_without_a_power_source_is_refused(tmp_path: Path) -> None:
    source = HostingSource(_filled(tmp_path))
    runner, base = await _serve(make_app(_model(), TOKEN.encode(), hosting_store=source))
    try:
        async with aiohttp.ClientSession() as http:
            url = f"{base}{H}/bill-runs"
            async with http.post(url, json={"period": "2026-11"}, headers=AUTH) as resp:
                assert resp.status == 503
                assert "power source" in (await resp.json())["error"]
            url = f"{base}{H}/report?as_of=2026-12-01"
            async with http.get(url, headers=AUTH) as resp:  # nor mined sats and prices
                assert resp.status == 503
                assert "report is off" in (await resp.json())["error"]
            async with http.get(f"{base}{H}/customers", headers=AUTH) as resp:
                assert resp.status == 200
                assert len((await resp.json())["customers"]) == 3
    finally:
        await runner.cleanup()


async def test_bad_power_samples_are_422_and_a_missing_database_503(tmp_path: Path) -> None:
    twice = SampleSeries.of(
        [(sc.T0 + sc.H, 3000, State.RUNNING), (sc.T0 + sc.H, 3100, State.RUNNING)]
    )
    db = _filled(tmp_path)
    good = HostingSource(db, power=SeriesPowerSource({"m1": twice}), clock=lambda: sc.NOW)
    away = HostingSource(f"sqlite:///{tmp_path / 'no-such-dir' / 'h.sqlite3'}", power=sc.power())
    for source, status, says in ((good, 422, "strictly increasing"), (away, 503, "cannot be")):
        runner, base = await _serve(make_app(_model(), TOKEN.encode(), hosting_store=source))
        try:
            async with aiohttp.ClientSession() as http:
                url = f"{base}{H}/bill-runs"
                async with http.post(url, json={"period": "2026-11"}, headers=AUTH) as resp:
                    assert resp.status == status
                    assert says in (await resp.json())["error"]
                async with http.get(f"{base}{H}/invoices", headers=AUTH) as resp:
                    if source is good:  # the failed run wrote nothing
                        assert (resp.status, await resp.json()) == (200, {"invoices": []})
                    else:
                        assert resp.status == 503
        finally:
            await runner.cleanup()
