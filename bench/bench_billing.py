"""A month's bill run at farm scale: `--customers` customers, `--machines` machines, 30 days.

Set-up (not timed): November 2026; machines spread evenly over the customers and over the
five pricing methods (nameplate, metered, rated+markup, BTC-indexed, revenue share), every
contract with a hosting fee and a 95 % SLA; one power sample per machine every `--interval`
seconds (running with a few curtailed and down hours, as a poller would record), two meter
readings per metered machine, mined satoshis per revenue-share machine-day, a BTC price per
day; every 50th machine moves to another customer on Nov 16.

Timed: `billing.run_period` on a fresh copy of the set-up SQLite database, end to end
(assignments and readings read, every machine's samples integrated, 1,000 invoices built and
written in one transaction). The issue's target: under 10 s for 1,000 customers x 30 days of
5,000 machines' samples. Median of `--runs` runs, wall and CPU (time.process_time).

References, same run: (1) the integration alone (the part that grows with the samples) by the
plain per-sample loop `power.integrate_reference` against `power.Integrator`, both over the
same `--reference-machines` machines and daily windows (they must agree exactly); (2) a whole
naive bill run (the loop in place of the integrator) against ours on a smaller farm
(`--naive-customers` x `--naive-machines`: the naive one at full size would take minutes),
which must write the same invoices. Ratios = reference CPU / ours.

Run: .venv/bin/python bench/bench_billing.py [--customers 1000] [--machines 5000]
     [--interval 900] [--runs 3] [--reference-machines 300] [--naive-customers 100]
     [--naive-machines 500]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from unittest import mock

import numpy as np

from hashfarm.hosting import billing
from hashfarm.hosting.billing import DEFAULT_MAX_HOLD_S, run_period
from hashfarm.hosting.contracts import Method, Terms, parse_bands
from hashfarm.hosting.inputs import MeterReading
from hashfarm.hosting.invoice import Machine
from hashfarm.hosting.period import SECONDS_PER_DAY, Period
from hashfarm.hosting.power import Integrator, SampleSeries, State, Usage, integrate_reference
from hashfarm.hosting.sources import DailyMined, DailyPrices, SeriesPowerSource
from hashfarm.hosting.store import Contract, Customer, connect

PERIOD = Period(2026, 11)
METHODS = list(Method)
Sources = tuple[SeriesPowerSource, DailyMined, DailyPrices]


def _terms(method: Method) -> Terms:
    common = {"hosting_fee_cents": 1500, "sla_bps": 9500}
    if method is Method.BTC_INDEXED:
        return Terms(method, bands=parse_bands("0:0.055,60000:0.065,90000:0.075"), **common)
    if method is Method.REVENUE_SHARE:
        return Terms(method, share_bps=1500, **common)
    return Terms(method, rate=Fraction("0.068"), markup_bps=800, **common)


def make_samples(machines: int, interval: int, seed: int) -> dict[str, SampleSeries]:
    rng = np.random.default_rng(seed)
    times = np.arange(PERIOD.start - interval, PERIOD.end, interval, dtype=np.int64)
    n = len(times)
    out: dict[str, SampleSeries] = {}
    for i in range(machines):
        states = np.zeros(n, dtype=np.int8)
        for state, hours in ((State.CURTAILED, 6), (State.DOWN, int(rng.integers(0, 60)))):
            start = int(rng.integers(0, n - 1))
            states[start : start + hours * 3600 // interval] = state
        watts = (3000 + rng.integers(-150, 150, n)).astype(np.int64)
        watts[states != State.RUNNING] = 0
        out[f"m{i:05d}"] = SampleSeries(times, watts, states)
    return out


def set_up(path: Path, customers: int, machines: int) -> None:
    store = connect(f"sqlite:///{path}")
    start = PERIOD.start - 30 * SECONDS_PER_DAY
    with store.tx():
        for c in range(customers):
            store.add_customer(Customer(f"c{c:04d}", f"Customer {c}", ""), start)
            method = METHODS[c % len(METHODS)]
            store.add_contract(Contract(f"k{c:04d}", f"c{c:04d}", _terms(method)), start)
        for i in range(machines):
            mid, c = f"m{i:05d}", i % customers
            store.put_machine(Machine(mid, "Antminer S19", 3250, 3250))
            store.assign(mid, f"k{c:04d}", start)
            if i % 50 == 0:
                store.assign(
                    mid, f"k{(c + 1) % customers:04d}", PERIOD.start + 15 * SECONDS_PER_DAY
                )
        store.add_readings(
            [MeterReading(f"m{i:05d}", t, Fraction(1000 + (t - start) // 1200))
             for i in range(machines) for t in (PERIOD.start, PERIOD.end)]
        )  # fmt: skip
    store.close()


def inputs(machines: int, interval: int) -> Sources:
    samples = make_samples(machines, interval, seed=1)
    mined = DailyMined({(m, d): 9_000 + i % 700 for i, m in enumerate(samples)
                        for d in PERIOD.days()})  # fmt: skip
    prices = DailyPrices({d: Fraction(55_000 + 1_500 * k) for k, d in enumerate(PERIOD.days())})
    return SeriesPowerSource(samples), mined, prices


def timed_runs(
    base: Path, runs: int, sources: tuple[SeriesPowerSource, DailyMined, DailyPrices]
) -> tuple[list[float], list[float], int]:
    walls, cpus, billed = [], [], 0
    power, mined, prices = sources
    for r in range(runs):
        copy = base.with_name(f"run{r}.sqlite3")
        shutil.copy(base, copy)
        store = connect(f"sqlite:///{copy}")
        w0, c0 = time.perf_counter(), time.process_time()
        report = run_period(store, PERIOD, power, now=PERIOD.end, mined=mined, prices=prices)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        billed = len(report.written)
        assert not report.errors, report.errors
        store.close()
    return walls, cpus, billed


def reference(power: SeriesPowerSource, machines: int) -> tuple[float, float]:
    """CPU seconds of ours and of the plain loop over the same machines' daily windows."""
    bounds = list(range(PERIOD.start, PERIOD.end + 1, SECONDS_PER_DAY))
    ids = [f"m{i:05d}" for i in range(machines)]
    c0 = time.process_time()
    ours = [
        Integrator(power.samples(m, PERIOD.start, PERIOD.end), DEFAULT_MAX_HOLD_S).windows(bounds)
        for m in ids
    ]
    c1 = time.process_time()
    slow = []
    for m in ids:
        s = power.samples(m, PERIOD.start, PERIOD.end)
        rows = list(zip(s.times.tolist(), s.watts.tolist(), s.states.tolist(), strict=True))
        slow.append(
            [integrate_reference(rows, a, b, DEFAULT_MAX_HOLD_S) for a, b in pairwise(bounds)]
        )
    c2 = time.process_time()
    assert ours == slow, "the integrator disagrees with the reference loop"
    return c1 - c0, c2 - c1


class NaiveIntegrator:
    """`Integrator`'s interface over the plain per-sample loop (the naive bill run)."""

    def __init__(self, series: SampleSeries, max_hold_s: int) -> None:
        self._rows = list(
            zip(series.times.tolist(), series.watts.tolist(), series.states.tolist(), strict=True)
        )
        self._hold = max_hold_s

    def windows(self, bounds: list[int]) -> list[Usage]:
        return [integrate_reference(self._rows, a, b, self._hold) for a, b in pairwise(bounds)]


def naive_run(tmp: Path, customers: int, machines: int, interval: int) -> tuple[float, float]:
    """CPU seconds of one whole bill run, ours and naive, on a smaller farm (same documents)."""
    base = tmp / "small.sqlite3"
    set_up(base, customers, machines)
    sources = inputs(machines, interval)
    cpu: list[float] = []
    docs: list[dict[str, str]] = []
    for name, integrator in (("ours", Integrator), ("naive", NaiveIntegrator)):
        copy = tmp / f"{name}.sqlite3"
        shutil.copy(base, copy)
        store = connect(f"sqlite:///{copy}")
        with mock.patch.object(billing, "Integrator", integrator):
            c0 = time.process_time()
            run_period(store, PERIOD, sources[0], now=PERIOD.end, mined=sources[1],
                       prices=sources[2])  # fmt: skip
            cpu.append(time.process_time() - c0)
        docs.append({r.number: r.document for r in store.invoices()})
        store.close()
    assert docs[0] == docs[1], "the naive run wrote different invoices"
    return cpu[0], cpu[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--machines", type=int, default=5000)
    ap.add_argument("--interval", type=int, default=900, help="seconds between samples")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reference-machines", type=int, default=300)
    ap.add_argument("--naive-customers", type=int, default=100)
    ap.add_argument("--naive-machines", type=int, default=500)
    args = ap.parse_args()
    if args.interval > DEFAULT_MAX_HOLD_S:
        ap.error(f"--interval must be at most {DEFAULT_MAX_HOLD_S} s (a sample's hold)")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "setup.sqlite3"
        t0 = time.perf_counter()
        set_up(base, args.customers, args.machines)
        sources = inputs(args.machines, args.interval)
        n_samples = len(sources[0].samples("m00000", 0, PERIOD.end)) * args.machines
        print(f"set-up: {args.customers:,} customers, {args.machines:,} machines, "
              f"{n_samples:,} samples ({args.interval} s apart), "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        walls, cpus, billed = timed_runs(base, args.runs, sources)
        naive = naive_run(Path(tmp), args.naive_customers, args.naive_machines, args.interval)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"bill run {PERIOD}: {billed:,} invoices; median wall {wall:.2f} s, CPU {cpu:.2f} s "
          f"over {args.runs} run(s) (target: < 10 s)")  # fmt: skip
    ours, slow = reference(sources[0], min(args.reference_machines, args.machines))
    print(f"integration, {min(args.reference_machines, args.machines)} machines x 30 daily "
          f"windows: Integrator CPU {ours:.3f} s, per-sample loop CPU {slow:.3f} s, "
          f"ratio {slow / max(ours, 1e-9):.1f}x (results identical)")  # fmt: skip
    print(f"whole bill run, {args.naive_customers} customers x {args.naive_machines} machines: "
          f"ours CPU {naive[0]:.3f} s, naive (per-sample loop) CPU {naive[1]:.3f} s, "
          f"ratio {naive[1] / max(naive[0], 1e-9):.1f}x (same invoices)")  # fmt: skip


if __name__ == "__main__":
    main()
