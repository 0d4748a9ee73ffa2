"""Monte Carlo payback: 100,000 paths x 5 years daily, on one core.

Prints the median wall time of several runs and its ratio to the reference measured in the
same run: the day-by-day Python simulation (`payback.simulate`, one path at a time), timed
on a sample of paths and scaled to the same number of paths. Target: under 2 s.

    .venv/bin/python bench/bench_montecarlo.py [--paths 100000] [--runs 5]
"""

from __future__ import annotations

import os

# one core: pin before numpy starts any thread pool
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from hashfarm.chain.networks import MAINNET  # noqa: E402
from hashfarm.economics.machine import Costs, Machine  # noqa: E402
from hashfarm.economics.montecarlo import Uncertainty, run_monte_carlo  # noqa: E402
from hashfarm.economics.payback import simulate  # noqa: E402
from hashfarm.economics.scenario import Scenario, Start  # noqa: E402

DAYS = 5 * 365 + 1  # five years, daily
START = Start(MAINNET, height=925_000, difficulty=1.2e14, fees_btc=0.03, price=100_000)
SCENARIO = Scenario(horizon_days=DAYS, difficulty_growth=(0.02,), price_growth_per_year=0.1)
MACHINE = Machine("Antminer S21", 200, 3500, price=3000)
COSTS = Costs(power_price_kwh=0.05, hosting_per_month=10, pool_fee=0.02)


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned (no sched_setaffinity)"


def _median_seconds(fn: Callable[[], object], runs: int) -> tuple[float, float, list[float]]:
    """Median wall and CPU seconds of `runs` calls, and every wall time.

    CPU time is what one core spent; on a shared machine it is the steadier figure.
    """
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reference-paths", type=int, default=20)
    args = parser.parse_args()
    pinning = _pin_one_core()
    unc = Uncertainty(paths=args.paths, seed=1, price_vol_per_year=0.6, growth_sd_per_epoch=0.03)
    run_monte_carlo(MACHINE, COSTS, START, SCENARIO, Uncertainty(paths=1000))  # warm-up
    mc_s, mc_cpu, mc_all = _median_seconds(
        lambda: run_monte_carlo(MACHINE, COSTS, START, SCENARIO, unc), args.runs
    )
    _, ref_s, _ = _median_seconds(
        lambda: [simulate(MACHINE, COSTS, START, SCENARIO) for _ in range(args.reference_paths)],
        max(3, args.runs // 2),
    )
    ref_total = ref_s / args.reference_paths * args.paths  # CPU seconds, like mc_cpu
    result = run_monte_carlo(MACHINE, COSTS, START, SCENARIO, unc)
    print(f"Monte Carlo payback, {args.paths:,} paths x {DAYS} days ({pinning})")
    print(f"  runs (s):                 {', '.join(f'{t:.3f}' for t in mc_all)}")
    print(f"  median wall:              {mc_s:.3f} s")
    print(f"  median CPU (one core):    {mc_cpu:.3f} s  (target < 2 s)")
    print(f"  path-days per CPU second: {args.paths * DAYS / mc_cpu:,.0f}")
    print(f"  reference, day-by-day:    {ref_s / args.reference_paths * 1e3:.2f} CPU ms/path "
          f"-> {ref_total:,.0f} s for {args.paths:,} paths")  # fmt: skip
    print(f"  ratio reference / MC:     {ref_total / mc_cpu:,.0f}x (CPU time, same run)")
    print(f"  P(payback in 5 y) = {result.probability_payback:.3f}; payback P10/P50/P90 = "
          f"{result.payback_p10}/{result.payback_p50}/{result.payback_p90} days")  # fmt: skip


if __name__ == "__main__":
    main()
