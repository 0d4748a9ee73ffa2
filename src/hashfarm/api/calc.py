"""The calculator's JSON routes: payback with P10/P50/P90 bands, machines compared, halvings.

`GET /api/calc?model=S21&btc_price=90000&power_price=0.05&...` answers one document: the
network it starts from, each machine's summary (the `hashfarm calc payback` and `calc compare`
figures, from `hashfarm.economics`), the Monte Carlo odds of the first machine, and the
series a chart draws (cumulative cash per machine, the P10/P50/P90 bands of the first one's
cash, the difficulty scenario, the halving days). The odds and the bands are one
`montecarlo.run_monte_carlo` run: the bands are its paths' cash on the chart's days, so the
last day's bands are the odds' `mc_cumulative_end_` figures. `GET /api/calc/models` lists
the catalog. The page at `/calc` (`api/web/pages_calc.py`) renders the same document, so
its URL is the shareable form of the inputs.

Hostile input is bounded here (`Limits`): every parameter is parsed strictly (ASCII digits,
no NaN or infinity, a documented range; 400 naming the parameter), Monte Carlo paths and the
horizon are capped, at most `COMPARE_MAX` machines are compared, and the computation runs on
one thread of its own with at most `QUEUE_MAX` requests waiting (more get a 503), so the
pool's event loop never simulates. The same inputs give the same answer (seeded), and the
last `CACHE_MAX` answers are kept.

Money is in USD (the BTC price, power price, machine price, hosting fee); percentages are
given as percent (`pool_fee=2` is 2 %), as on the command line. The network is mainnet,
from the data shipped with the package unless `difficulty`/`height` are given.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

from aiohttp import web

from hashfarm.api.admin import error, respond
from hashfarm.api.params import BadRequest, int_arg, query_args, shown
from hashfarm.chain.networks import get_network
from hashfarm.economics import catalog, report
from hashfarm.economics.compare import compare_machines, fair_price
from hashfarm.economics.machine import Costs, Machine
from hashfarm.economics.montecarlo import Uncertainty, run_monte_carlo
from hashfarm.economics.network import network_state_from_figures
from hashfarm.economics.payback import PaybackResult
from hashfarm.economics.scenario import MAX_GROWTH, MIN_GROWTH, Scenario, Start
from hashfarm.errors import ConfigError

__all__ = ["CALC_KEY", "PARAMS", "CalcInputs", "Calculator", "add_routes", "parse_inputs"]

HORIZON_MAX = 3650  # days one simulation may cover (ten years)
PATHS_MAX = 10_000  # Monte Carlo paths for the odds (about 0.6 s at ten years)
# paths behind the chart's bands: the odds' own, kept on the chart's days only (at most
# 367 x 10,000 floats, 29 MB)
BAND_PATHS_MAX = PATHS_MAX
COMPARE_MAX = 5  # machines compared beside the first
PATH_EPOCHS_MAX = 100  # values of a difficulty path
CHART_POINTS = 366  # points per series at most (one per day up to a year, then sampled)
QUEUE_MAX = 8  # computations queued or running before more are refused (503)
CACHE_MAX = 64  # answers kept, by their inputs
DEFAULT_MODEL = "Antminer S21"
# Absent (or empty) inputs are docs/calculator.md's worked example: an S21 bought for $2,800
# at $90,000, 5 cents per kWh, 0.03 BTC of fees per block, a 2 % pool fee. Every other
# default is the command line's (`hashfarm calc payback`).
EXAMPLE = {"machine_price": "2800", "btc_price": "90000", "power_price": "0.05",
           "fees_btc": "0.03", "pool_fee": "2"}  # fmt: skip
NETWORK = "mainnet"

# Any float as Python's repr or JavaScript's String() writes it (17 significant digits, up to
# 20+ after the point: 0.00012345678901234567, 1.1125369292536007e-308), still bounded.
_NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?")
_MODEL = re.compile(r"[A-Za-z0-9 ()+.\-]{1,40}")

# name -> (low, high, what it is) for every number the route takes; ints are marked by type
PARAMS: dict[str, tuple[float, float, str]] = {
    "hashrate_ths": (1e-6, 1e6, "a custom machine's TH/s"),
    "power_w": (0.1, 1e6, "a custom machine's watts at the wall"),
    "machine_price": (0.0, 1e9, "USD per machine"),
    "power_price": (0.0, 10.0, "USD per kWh"),
    "hosting": (0.0, 1e6, "USD per machine per month"),
    "pool_fee": (0.0, 99.0, "percent of the hashrate"),
    "dev_fee": (0.0, 99.0, "percent of the hashrate"),
    "uptime": (1.0, 100.0, "percent of the day"),
    "btc_price": (0.01, 1e9, "USD"),
    "difficulty": (1.0, 1e30, "network difficulty"),
    "fees_btc": (0.0, 100.0, "BTC of fees per block"),
    "difficulty_growth": (MIN_GROWTH * 100, MAX_GROWTH * 100, "percent per epoch"),
    "price_growth": (-99.0, 1000.0, "percent per year"),
    "price_vol": (0.0, 500.0, "percent per year"),
    "growth_sd": (0.0, 100.0, "percent per epoch"),
}
INTS: dict[str, tuple[int, int]] = {
    "count": (1, 100_000),
    "height": (0, 100_000_000),
    "horizon_days": (1, HORIZON_MAX),
    "paths": (0, PATHS_MAX),
    "seed": (0, 999_999_999),  # int_arg reads at most nine digits (api/params.py)
    "fair_price_days": (0, HORIZON_MAX),
}
TEXT = ("model", "compare", "difficulty_path")


@dataclass(frozen=True, slots=True)
class CalcInputs:
    """Every input of one calculation, normalised (hashable: the cache's key)."""

    machines: tuple[Machine, ...]  # the first is the one with odds and bands
    costs: Costs
    btc_price: float
    difficulty: float
    height: int
    fees_btc: float
    scenario: Scenario
    paths: int
    seed: int
    price_vol: float  # fraction per year
    growth_sd: float  # fraction per epoch
    fair_price_days: int  # 0: none


def _number(args: Mapping[str, str], name: str, default: float) -> float:
    raw = args.get(name)
    if raw is None:
        return default
    low, high, what = PARAMS[name]
    if _NUMBER.fullmatch(raw) is None or not low <= float(raw) <= high:
        raise BadRequest(f"{name} must be a number from {low:g} to {high:g} ({what}), "
                         f"not {shown(raw)}")  # fmt: skip
    return float(raw)


def _int(args: Mapping[str, str], name: str, default: int) -> int:
    low, high = INTS[name]
    return int_arg(args, name, default, low, high)


def _model(name: str, param: str, price: float, count: int) -> Machine:
    """A catalog model by name (as `hashfarm calc` finds it), at `price` per machine."""
    if _MODEL.fullmatch(name) is None:
        raise BadRequest(f"{param}: a model name is letters, digits, spaces and ()+.-, "
                         f"not {shown(name)}")  # fmt: skip
    try:
        return Machine.from_model(catalog.find_model(name), price, count)
    except ConfigError as exc:  # its message starts "model: "
        raise BadRequest(str(exc) if param == "model" else f"{param}: {exc}") from None


def _first_machine(args: Mapping[str, str], price: float, count: int) -> Machine:
    rate, watts = args.get("hashrate_ths"), args.get("power_w")
    if args.get("model") is None and rate is not None and watts is not None:
        hs, w = _number(args, "hashrate_ths", 0.0), _number(args, "power_w", 0.0)
        return Machine("custom", hs, w, price, count)
    machine = _model(args.get("model") or DEFAULT_MODEL, "model", price, count)
    if rate is not None or watts is not None:  # the catalog's figures, overridden
        hs = _number(args, "hashrate_ths", machine.hashrate_ths)
        return replace(machine, hashrate_ths=hs, power_w=_number(args, "power_w", machine.power_w))
    return machine


def _compared(raw: str | None, count: int) -> list[Machine]:
    """`compare=MODEL=PRICE,MODEL=PRICE`: the machines shown beside the first."""
    if not raw:
        return []
    specs = raw.split(",")
    if len(specs) > COMPARE_MAX:
        raise BadRequest(f"compare: at most {COMPARE_MAX} machines, not {len(specs)}")
    out = []
    for spec in specs:
        name, _, price = spec.partition("=")
        value = 0.0
        if price:
            low, high, _ = PARAMS["machine_price"]
            if _NUMBER.fullmatch(price) is None or not low <= float(price) <= high:
                raise BadRequest(f"compare: the price in {shown(spec)} must be a number from "
                                 f"{low:g} to {high:g} (USD per machine)")  # fmt: skip
            value = float(price)
        out.append(_model(name.strip(), "compare", value, count))
    return out


def _growth(args: Mapping[str, str]) -> tuple[float, ...]:
    path = args.get("difficulty_path")
    if path:
        parts = path.split(",")
        low, high, _ = PARAMS["difficulty_growth"]
        if len(parts) > PATH_EPOCHS_MAX or not all(
            _NUMBER.fullmatch(p) and low <= float(p) <= high for p in parts
        ):
            raise BadRequest(
                f"difficulty_path must be 1 to {PATH_EPOCHS_MAX} percentages from {low:g} to "
                f"{high:g}, comma separated, not {shown(path)}"
            )
        return tuple(float(p) / 100 for p in parts)
    return (_number(args, "difficulty_growth", catalog.recent_growth_per_epoch() * 100) / 100,)


def parse_inputs(pairs: Any) -> CalcInputs:
    """The inputs in a query string (`request.query.items()`); BadRequest names a bad one.
    An empty value is an absent one (a form's blank field)."""
    given = {k: v.strip() for k, v in query_args(pairs, (*PARAMS, *INTS, *TEXT)).items()}
    args = {**EXAMPLE, **{k: v for k, v in given.items() if v}}
    count = _int(args, "count", 1)
    price = _number(args, "machine_price", 0.0)
    machines = (_first_machine(args, price, count), *_compared(args.get("compare"), count))
    costs = Costs(_number(args, "power_price", 0.0), _number(args, "hosting", 0.0),
                  _number(args, "pool_fee", 0.0) / 100, _number(args, "dev_fee", 0.0) / 100,
                  _number(args, "uptime", 100.0) / 100)  # fmt: skip
    latest = catalog.difficulty_epochs()[-1]
    scenario = Scenario(_int(args, "horizon_days", 3 * 365), _growth(args),
                        _number(args, "price_growth", 0.0) / 100)  # fmt: skip
    return CalcInputs(
        machines=machines,
        costs=costs,
        btc_price=_number(args, "btc_price", 0.0),
        difficulty=_number(args, "difficulty", latest.difficulty),
        height=_int(args, "height", latest.start_height),
        fees_btc=_number(args, "fees_btc", 0.0),
        scenario=scenario,
        paths=_int(args, "paths", 1000),
        seed=_int(args, "seed", 0),
        price_vol=_number(args, "price_vol", 60.0) / 100,
        growth_sd=_number(args, "growth_sd", 3.0) / 100,
        fair_price_days=_int(args, "fair_price_days", 0),
    )


# -- the computation (on the calculator's thread) -------------------------------------------


def _sampled_days(days: int) -> list[int]:
    """The day indexes a chart shows: every day up to CHART_POINTS, else evenly spread,
    always with the last day."""
    step = max(1, math.ceil(days / CHART_POINTS))
    picked = list(range(0, days, step))
    return picked if picked[-1] == days - 1 else [*picked, days - 1]


def _run_json(run: PaybackResult, days: list[int]) -> dict[str, Any]:
    return {"summary": {k: report.plain(v, k) for k, v in report.payback_summary(run).items()},
            "cumulative": [run.rows[d].cumulative for d in days]}  # fmt: skip


def compute(inputs: CalcInputs) -> dict[str, Any]:
    """The whole answer for `inputs` (blocking; numpy)."""
    network = get_network(NETWORK)
    state = network_state_from_figures(network, inputs.height, inputs.difficulty, inputs.fees_btc)
    start = Start(network, state.height + 1, state.difficulty, state.fees_btc_per_block,
                  inputs.btc_price)  # fmt: skip
    scenario, costs, first = inputs.scenario, inputs.costs, inputs.machines[0]
    rows = compare_machines(list(inputs.machines), costs, start, scenario, state.next_subsidy_sats)
    days = _sampled_days(scenario.horizon_days)
    machines = []
    for machine, c in zip(inputs.machines, rows, strict=True):
        doc = _run_json(c.payback, days)
        doc["economics"] = {k: report.plain(v, k) for k, v in asdict(c.economics).items()}
        doc["compare"] = {k: report.plain(v, k) for k, v in report.comparison_row(c).items()}
        doc["hashrate_ths"], doc["power_w"] = machine.hashrate_ths, machine.power_w
        if inputs.fair_price_days:
            doc["fair_price"] = fair_price(machine, costs, start, scenario, inputs.fair_price_days)
        machines.append(doc)
    run = rows[0].payback
    mc: dict[str, Any] | None = None
    bands: dict[str, Any] | None = None
    if inputs.paths > 0:
        unc = Uncertainty(inputs.paths, inputs.seed, inputs.price_vol, inputs.growth_sd)
        result = run_monte_carlo(first, costs, start, scenario, unc, band_days=days)
        mc = {k: report.plain(v, k) for k, v in report.mc_summary(result).items()}
        q = result.bands
        assert q is not None  # band_days was given
        bands = {"paths": result.paths, "p10": q.p10.tolist(), "p50": q.p50.tolist(),
                 "p90": q.p90.tolist()}  # fmt: skip
    return {
        "network": report.state_summary(state),
        "currency": "USD",
        "btc_price": inputs.btc_price,
        "horizon_days": scenario.horizon_days,
        "difficulty_growth": list(scenario.difficulty_growth),
        "price_growth_per_year": scenario.price_growth_per_year,
        "halving_days": list(run.halving_days),
        "machines": machines,
        "monte_carlo": mc,
        "chart": {
            "day": [d + 1 for d in days],
            "difficulty": [run.rows[d].difficulty for d in days],
            "bands": bands,
        },
    }


class Calculator:
    """Computations on one thread of their own, bounded, with the last answers cached."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="api-calc")
        self._lock = threading.Lock()  # guards the count and the cache (loop and thread)
        self._waiting = 0
        self._cache: OrderedDict[CalcInputs, dict[str, Any]] = OrderedDict()

    async def answer(self, inputs: CalcInputs) -> dict[str, Any] | None:
        """The answer for `inputs`, or None when QUEUE_MAX computations already wait.

        Inputs each in range can still ask for a future the economics refuse (difficulty
        growing +300 % per epoch for ten years overflows a float): a BadRequest saying so."""
        with self._lock:
            if inputs in self._cache:
                self._cache.move_to_end(inputs)
                return self._cache[inputs]
            if self._waiting >= QUEUE_MAX:
                return None
            self._waiting += 1
        job = self._thread.submit(self._compute, inputs)
        job.add_done_callback(self._finished)
        try:
            return await asyncio.wrap_future(job)
        except ConfigError as exc:
            raise BadRequest(f"these inputs cannot be simulated (difficulty_growth, "
                             f"difficulty_path, horizon_days): {exc}") from None  # fmt: skip

    def _finished(self, _job: object) -> None:
        with self._lock:
            self._waiting -= 1

    def _compute(self, inputs: CalcInputs) -> dict[str, Any]:
        doc = compute(inputs)
        with self._lock:
            self._cache[inputs] = doc
            while len(self._cache) > CACHE_MAX:
                self._cache.popitem(last=False)
        return doc

    def close(self) -> None:
        """Stop the thread (a computation in progress finishes first)."""
        self._thread.shutdown(wait=True)


CALC_KEY = web.AppKey("calc", Calculator)


def calculator(app: web.Application) -> Calculator:
    """The app's calculator (registered by `add_routes`)."""
    calc = app.get(CALC_KEY)
    if calc is None:
        raise RuntimeError("api.calc.add_routes was not called on this app")
    return calc


async def _calc(request: web.Request) -> web.Response:
    inputs = parse_inputs(request.query.items())
    doc = await calculator(request.app).answer(inputs)
    if doc is None:
        return error(503, "the calculator is busy; try again", headers={"Retry-After": "1"})
    return respond(doc)


async def _models(request: web.Request) -> web.Response:
    query_args(request.query.items(), ())
    return respond({"models": models_json()})


def models_json() -> list[dict[str, Any]]:
    """The catalog's models, each marked `complete` when it states both TH/s and watts."""
    return [{**asdict(m), "complete": m.complete} for m in catalog.machine_models()]


def add_routes(app: web.Application) -> None:
    """Register `/api/calc` and `/api/calc/models` (public and read-only)."""
    if CALC_KEY not in app:
        calc = Calculator()
        app[CALC_KEY] = calc

        async def close(_: web.Application) -> None:
            await asyncio.get_running_loop().run_in_executor(None, calc.close)

        app.on_cleanup.append(close)
    app.router.add_get("/api/calc", _calc)
    app.router.add_get("/api/calc/models", _models)
