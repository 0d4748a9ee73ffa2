"""`hashfarm bench` as a user runs it: a subprocess, real hashing, one JSON object out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HASHFARM = [str(Path(sys.executable).with_name("hashfarm"))]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HASHFARM, "bench", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(("backend", "threads"), [("hashlib", 1), ("numba", 1), ("numba", 2)])
def test_bench_json_reports_a_plausible_rate(backend: str, threads: int) -> None:
    done = _bench("--backend", backend, "--threads", str(threads), "--seconds", "0.3", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backend"] == backend
    assert report["threads"] == threads
    assert report["seconds"] >= 0.3
    assert report["hashes"] > 0
    rate = report["hashes"] / report["seconds"]
    assert report["hashes_per_second"] == pytest.approx(rate, rel=1e-3)
    assert report["hashes_per_second_per_thread"] == pytest.approx(rate / threads, rel=1e-3)
    assert report["hashes_per_second"] > 10_000  # even a loaded CI machine does this much


def test_bench_prints_a_human_line() -> None:
    done = _bench("--backend", "hashlib", "--seconds", "0.2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hashlib: ")
    assert "H/s with 1 thread(s)" in done.stdout
    assert "per thread" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "sha3"], "'sha3' is not one of 'hashlib', 'numba', 'cuda'"),
        (["--threads", "0"], "0 is not in the range x>=1"),
        (["--seconds", "0"], "0 is not in the range x>0"),
        (["--backend", "cuda", "--threads", "2"], "the cuda backend drives one GPU"),
    ],
)
def test_bench_refuses_bad_options_with_a_clear_message(args: list[str], message: str) -> None:
    done = _bench(*args)
    assert done.returncode == 2
    assert message in done.stderr
