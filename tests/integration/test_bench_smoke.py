"""Every benchmark in bench/ still runs, in a bounded form (the figures are not checked).

Benchmarks are never timed tests; this only keeps them from rotting: each script runs with
small sizes and must exit 0 and print its figures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"
SMALL_ARGS: dict[str, list[str]] = {
    "bench_accounting.py": [
        "--shares",
        "20000",
        "--accounts",
        "300",
        "--runs",
        "1",
        "--outputs",
        "50",
    ],
    "bench_accounting_service.py": ["--shares", "20000", "--accounts", "300", "--runs", "1"],
    "bench_accounting_pps.py": ["--shares", "2000", "--accounts", "50", "--runs", "1"],
    "bench_broker.py": ["--samples", "50", "--sessions", "8", "--seconds", "0.3", "--runs", "1"],
    "bench_web_assets.py": ["--points", "1000", "--runs", "1"],
    "bench_billing.py": [
        "--customers",
        "20",
        "--machines",
        "100",
        "--runs",
        "1",
        "--naive-customers",
        "5",
        "--naive-machines",
        "20",
    ],
    "bench_chain.py": ["--runs", "1", "--hashes", "2000"],
    "bench_fleet_simulate.py": ["--machines", "20", "--rounds", "1"],
    "bench_fleet_poll.py": [
        "--machines",
        "50",
        "--interval",
        "1",
        "--rounds",
        "2",
        "--farm-procs",
        "1",
    ],
    "bench_fleet_scan.py": [
        "--runs",
        "1",
        "--dead",
        "127.2.0.0/26",
        "--hung",
        "127.3.0.0/28",
        "--probe-timeout",
        "0.2",
    ],
    "bench_hashing.py": ["--runs", "1", "--seconds", "0.2", "--backends", "hashlib"],
    "bench_montecarlo.py": ["--paths", "2000", "--runs", "1", "--reference-paths", "2"],
    "bench_pool.py": ["--quick", "--runs", "1"],
    "bench_pool_hotpaths.py": ["--connections", "200", "--shares", "500", "--runs", "1"],
    "bench_pool_ledger.py": ["--sessions", "8", "--seconds", "0.2", "--runs", "1"],
    "bench_pool_tail.py": ["--quick", "--floor"],
    "bench_scaleout.py": ["--quick"],
    "bench_scaleout_notify.py": ["--front-ends", "1,2", "--miners", "2", "--blocks", "2"],
    "bench_proxy.py": ["--quick"],
    "bench_stratum_codec.py": ["--runs", "1", "--n", "2000"],
    "bench_submitblock.py": ["--procs", "1", "--calls", "2"],
    "bench_tides_notify.py": ["--runs", "1", "--accounts", "600", "--shares", "6000"],
    "bench_web.py": ["--quick"],
}


def test_every_benchmark_has_small_arguments() -> None:
    assert sorted(p.name for p in BENCH.glob("bench_*.py")) == sorted(SMALL_ARGS)


@pytest.mark.parametrize("script", sorted(SMALL_ARGS))
def test_benchmark_runs_small(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *SMALL_ARGS[script]],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.strip(), f"{script} printed no figures"
