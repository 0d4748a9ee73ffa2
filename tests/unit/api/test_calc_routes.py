"""The calculator's JSON routes (`api/calc.py`): figures equal to `hashfarm calc`'s, bands from
the same Monte Carlo paths as the odds that collapse onto the deterministic run when nothing is
uncertain, strict and bounded input (400 naming the parameter, never a 500), and the busy
refusal; over a real socket on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from click.testing import CliRunner

from hashfarm.api import calc
from hashfarm.api.calc import Calculator, compute, parse_inputs
from hashfarm.api.params import BadRequest
from hashfarm.api.server import BODY_MAX, _json_errors
from hashfarm.chain.networks import get_network
from hashfarm.cli.main import cli
from hashfarm.economics import catalog
from hashfarm.economics.machine import Costs, Machine
from hashfarm.economics.montecarlo import Uncertainty, cash_bands
from hashfarm.economics.payback import simulate
from hashfarm.economics.scenario import Scenario, Start

QUERY = {"model": "S21", "machine_price": "2800", "btc_price": "90000", "power_price": "0.05",
         "fees_btc": "0.03", "pool_fee": "2", "difficulty": "1.2e14", "height": "900000",
         "difficulty_growth": "1.5", "horizon_days": "1200", "paths": "400", "seed": "7",
         "compare": "S19 Pro=600,A1466=1800", "fair_price_days": "365"}  # fmt: skip


def _cli_json(*args: str) -> Any:
    done = CliRunner().invoke(cli, ["calc", *args, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def test_figures_equal_the_command_line() -> None:
    doc = compute(parse_inputs(QUERY.items()))
    common = ["--price", "90000", "--power-price", "0.05", "--fees-btc", "0.03", "--pool-fee",
              "2", "--difficulty", "1.2e14", "--height", "900000", "--difficulty-growth", "1.5",
              "--horizon-days", "1200"]  # fmt: skip
    cli_payback = _cli_json("payback", "S21", "--machine-price", "2800", "--paths", "400",
                            "--seed", "7", *common)  # fmt: skip
    first = doc["machines"][0]
    for key, value in first["summary"].items():
        assert cli_payback[key] == value, key
    for key, value in doc["monte_carlo"].items():
        assert cli_payback[key] == value, key
    cli_compare = _cli_json("compare", "S21=2800", "S19 Pro=600", "A1466=1800",
                            "--fair-price-days", "365", *common)  # fmt: skip
    assert [m["compare"] for m in doc["machines"]] == [
        {k: v for k, v in row.items() if not k.startswith("fair_price")}
        for row in cli_compare["rows"]
    ]
    assert [m["fair_price"] for m in doc["machines"]] == [
        row["fair_price_365d_fiat"] for row in cli_compare["rows"]
    ]
    assert doc["network"]["difficulty"] == 1.2e14
    assert doc["network"]["height"] == 900_000
    assert doc["halving_days"] == pytest.approx([(1_050_000 - 900_001) * 600 / 1.015 / 86400],
                                                rel=0.02)  # fmt: skip


def test_chart_series_follow_the_run() -> None:
    doc = compute(parse_inputs(QUERY.items()))
    chart, days = doc["chart"], doc["horizon_days"]
    assert chart["day"][0] == 1
    assert chart["day"][-1] == days
    assert len(chart["day"]) <= calc.CHART_POINTS + 1
    machine = Machine.from_model(catalog.find_model("S21"), 2800)
    start = Start(get_network("mainnet"), 900_001, 1.2e14, 0.03, 90_000)
    run = simulate(machine, Costs(0.05, pool_fee=0.02), start, Scenario(days, (0.015,)))
    assert doc["machines"][0]["cumulative"] == [run.rows[d - 1].cumulative for d in chart["day"]]
    assert chart["difficulty"] == [run.rows[d - 1].difficulty for d in chart["day"]]
    bands = chart["bands"]
    assert bands["paths"] == 400
    assert all(lo <= mid <= hi for lo, mid, hi in zip(bands["p10"], bands["p50"], bands["p90"],
                                                      strict=True))  # fmt: skip
    assert bands["p90"][-1] > bands["p10"][-1]  # the future is spread
    # one Monte Carlo run: the last day's bands are the odds' cash at the horizon
    mc = doc["monte_carlo"]
    assert [bands[p][-1] for p in ("p10", "p50", "p90")] == [
        mc[f"mc_cumulative_end_{p}_fiat"] for p in ("p10", "p50", "p90")
    ]


def test_bands_are_the_economics_bands() -> None:
    """The route draws `montecarlo.cash_bands` on the chart's days, nothing of its own."""
    doc = compute(parse_inputs(QUERY.items()))
    machine = Machine.from_model(catalog.find_model("S21"), 2800)
    start = Start(get_network("mainnet"), 900_001, 1.2e14, 0.03, 90_000)
    days = [d - 1 for d in doc["chart"]["day"]]
    q = cash_bands(machine, Costs(0.05, pool_fee=0.02), start, Scenario(1200, (0.015,)),
                   Uncertainty(400, 7, 0.6, 0.03), days)  # fmt: skip
    bands = doc["chart"]["bands"]
    expected = [q.p10.tolist(), q.p50.tolist(), q.p90.tolist()]
    assert [bands["p10"], bands["p50"], bands["p90"]] == expected


def test_bands_collapse_onto_the_simulation_without_uncertainty() -> None:
    still = compute(parse_inputs({**QUERY, "price_vol": "0", "growth_sd": "0"}.items()))
    for p in ("p10", "p50", "p90"):  # the deterministic run, as the chart's own line
        np.testing.assert_allclose(still["chart"]["bands"][p], still["machines"][0]["cumulative"],
                                   rtol=1e-9, atol=1e-6)  # fmt: skip
    # every day of a run with hosting and uptime that is switched off after the halving (day
    # 344) and back on when the price has grown enough
    machine = Machine("custom", 100.0, 3000.0, price=1500.0, count=3)
    costs = Costs(0.05, hosting_per_month=20.0, uptime=0.95)
    start = Start(get_network("mainnet"), 1_000_000, 1.1e14, 0.02, 90_000)
    scenario = Scenario(900, (0.02, -0.01, 0.01), price_growth_per_year=0.6)
    run = simulate(machine, costs, start, scenario)
    q = cash_bands(machine, costs, start, scenario, Uncertainty(8, 1, 0.0, 0.0))
    expected = np.asarray([r.cumulative for r in run.rows])
    assert 0 < run.days_off < 900  # the switch-off rule is exercised both ways
    assert run.rows[-1].running
    assert q.days == tuple(range(900))
    for row in (q.p10, q.p50, q.p90):
        np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-6)


def test_a_changed_input_changes_the_chart() -> None:
    base = compute(parse_inputs(QUERY.items()))
    cheaper = compute(parse_inputs({**QUERY, "btc_price": "150000"}.items()))
    assert cheaper["chart"]["bands"]["p50"] != base["chart"]["bands"]["p50"]
    assert cheaper["machines"][0]["cumulative"][-1] > base["machines"][0]["cumulative"][-1]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"paths": "10001"}, "paths must be an integer from 0 to 10000"),
        ({"horizon_days": "3651"}, "horizon_days must be an integer from 1 to 3650"),
        ({"btc_price": "nan"}, "btc_price must be a number"),
        ({"btc_price": "inf"}, "btc_price must be a number"),
        ({"power_price": "1e999"}, "power_price must be a number from 0 to 10"),
        ({"seed": "٣"}, "seed must be an integer"),
        ({"count": "0"}, "count must be an integer from 1"),
        ({"model": "S9000"}, "model: no single catalog model"),
        ({"model": "<script>"}, "model: a model name is"),
        ({"model": "A1346"}, "has no stated hashrate and power"),
        ({"compare": ",".join(["S9"] * 6)}, "compare: at most 5 machines"),
        ({"compare": "S9=-1"}, "compare: the price in 'S9=-1'"),
        ({"difficulty_growth": "301"}, "difficulty_growth must be a number from -75 to 300"),
        ({"difficulty_path": "1," * 100 + "1"}, "difficulty_path must be 1 to 100"),
        ({"pathz": "1"}, "unknown query parameter 'pathz'"),
    ],
)
def test_bad_input_names_the_parameter(query: dict[str, str], said: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_inputs(query.items())
    assert said in str(caught.value)


def test_custom_machine_and_catalog_overrides() -> None:
    custom = parse_inputs({"hashrate_ths": "1.2", "power_w": "18"}.items()).machines[0]
    assert (custom.name, custom.hashrate_ths, custom.power_w) == ("custom", 1.2, 18.0)
    tuned = parse_inputs({"model": "S19 Pro", "power_w": "2900"}.items()).machines[0]
    assert (tuned.name, tuned.hashrate_ths, tuned.power_w) == ("Antminer S19 Pro", 110.0, 2900.0)
    default = parse_inputs(()).machines[0]
    assert default.name == calc.DEFAULT_MODEL


@pytest.fixture
async def base() -> AsyncIterator[str]:
    app = web.Application(middlewares=[_json_errors], client_max_size=BODY_MAX)
    calc.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_routes_over_http(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/calc", params=QUERY) as resp:
            assert resp.status == 200
            doc = await resp.json()
        async with http.get(f"{base}/api/calc", params=QUERY) as resp:
            assert await resp.json() == doc  # seeded: the same URL, the same answer
        assert doc == json.loads(json.dumps(compute(parse_inputs(QUERY.items()))))
        async with http.get(f"{base}/api/calc?paths=99999") as resp:
            assert resp.status == 400
            assert "paths must be" in (await resp.json())["error"]
        # each in range, together past what a float holds: a 400 that says why, never a 500
        async with http.get(f"{base}/api/calc?difficulty_growth=300&horizon_days=3650") as resp:
            assert resp.status == 400
            assert "cannot be simulated" in (await resp.json())["error"]
        async with http.get(f"{base}/api/calc/models") as resp:
            models = (await resp.json())["models"]
        assert len(models) == len(catalog.machine_models())
        assert {m["model"] for m in models if m["complete"]} >= {"Antminer S21", "Avalon A1466"}


async def test_a_full_queue_is_refused_not_queued() -> None:
    calculator = Calculator()
    try:
        inputs = parse_inputs({"paths": "0", "horizon_days": "30"}.items())
        doc = await calculator.answer(inputs)
        assert doc is not None
        assert await calculator.answer(inputs) is doc  # cached
        calculator._waiting = calc.QUEUE_MAX  # as if that many were queued
        assert await calculator.answer(parse_inputs({"paths": "0"}.items())) is None
    finally:
        calculator.close()
