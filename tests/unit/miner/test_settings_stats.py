"""Miner settings, pool URLs, counters and the three output modes."""

from __future__ import annotations

import io
from dataclasses import replace

import orjson
import pytest
from rich.console import Console

from hashfarm.errors import ConfigError
from hashfarm.miner.display import Reporter
from hashfarm.miner.engine import HashingEngine, executor_kind
from hashfarm.miner.settings import MinerSettings, PoolURL
from hashfarm.miner.stats import MinerStats, RateMeter
from hashfarm.miner.workgen import results_cap


def test_pool_url() -> None:
    assert PoolURL.parse("stratum+tcp://pool.example:3333") == PoolURL("pool.example", 3333)
    assert PoolURL.parse("127.0.0.1:4000") == PoolURL("127.0.0.1", 4000)
    assert str(PoolURL("h", 1)) == "stratum+tcp://h:1"
    with pytest.raises(ConfigError, match="not supported yet"):
        PoolURL.parse("stratum+ssl://pool.example:443")
    with pytest.raises(ConfigError, match="scheme"):
        PoolURL.parse("http://pool.example:80")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        PoolURL.parse("stratum+tcp://pool.example")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"threads": 0}, "miner.threads"),
        ({"suggest_difficulty": 0.0}, "miner.suggest_difficulty"),
        ({"nonce_space": 0}, "miner.nonce_space"),
        ({"chunk_seconds": 0.0}, "miner.chunk_seconds"),
        ({"backoff_initial": 60.0}, "miner.backoff_initial"),
    ],
)
def test_settings_name_the_bad_key(change: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        replace(MinerSettings(), **change).validate()  # type: ignore[arg-type]


def test_executor_choice() -> None:
    assert executor_kind(MinerSettings(backend="hashlib")) == "process"
    assert executor_kind(MinerSettings(backend="cuda")) == "thread"
    assert executor_kind(MinerSettings(backend="numba")) == "thread"  # nogil kernels
    assert executor_kind(MinerSettings(backend="hashlib", executor="thread")) == "thread"


def test_rate_meter_windows() -> None:
    meter = RateMeter(started=0.0)
    for t in range(1, 61):
        meter.add(1000, float(t))
    assert meter.rate(5.0, 60.0) == pytest.approx(1000.0)
    assert meter.rate(60.0, 60.0) == pytest.approx(1000.0)
    assert meter.total == 60_000
    young = RateMeter(started=0.0)
    young.add(1000, 1.0)
    young.add(1000, 2.0)
    assert young.rate(60.0, 2.0) == pytest.approx(1000.0)  # 2 s of history, not 60
    young.add(1000, 70.0)
    assert young.rate(60.0, 70.0) == pytest.approx(1000 / 60)  # old samples age out


def test_stats_verdicts_and_latency() -> None:
    stats = MinerStats("hashlib", 2, started=0.0)
    stats.verdict(True, None, 0.5, 0.010)
    stats.verdict(False, "[23] Low difficulty share", 0.5, 0.030)
    stats.found(3.0)
    stats.found(1.0)
    snap = stats.snapshot(10.0)
    assert (snap["accepted"], snap["rejected"]) == (1, 1)
    assert snap["reject_reasons"] == {"[23] Low difficulty share": 1}
    assert snap["best_share"] == 3.0
    assert snap["latency_ms"] == pytest.approx(14.0)  # 10 ms, then 20 % of the way to 30 ms


def test_json_and_quiet_modes() -> None:
    stats = MinerStats("hashlib", 1, started=0.0)
    out = io.StringIO()
    json_reporter = Reporter(stats, "json", stream=out, clock=lambda: 5.0)
    json_reporter.event("rejected", "share rejected", "warn", reason="[21] Job not found")
    json_reporter.print_stats()
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "rejected"
    assert first["reason"] == "[21] Job not found"
    assert second["event"] == "stats"
    assert second["backend"] == "hashlib"
    quiet = io.StringIO()
    reporter = Reporter(stats, "quiet", stream=quiet, clock=lambda: 5.0)
    reporter.event("accepted", "share accepted", "good")
    reporter.event("disconnected", "connection lost", "warn")
    assert "accepted" not in quiet.getvalue()
    assert "connection lost" in quiet.getvalue()


def test_live_view_shows_threads_and_reasons() -> None:
    stats = MinerStats("numba", 2, started=0.0)
    stats.add_hashes(0, 5_000_000, 1.0)
    stats.add_hashes(1, 3_000_000, 1.0)
    stats.verdict(False, "[22] Duplicate share", 1.0, 0.002)
    reporter = Reporter(stats, "live", stream=io.StringIO(), clock=lambda: 2.0)
    reporter.event("accepted", "share accepted", "good")
    console = Console(file=io.StringIO(), width=200)
    console.print(reporter.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "numba#0" in text
    assert "numba#1" in text
    assert "2.5 MH/s" in text  # 5 M hashes over 2 s
    assert "[22] Duplicate share: 1" in text
    assert "latency 2.0 ms" in text


def test_results_cap_and_chunk_sizing() -> None:
    assert results_cap((1 << 256) - 1) == 64  # every hash wins: 64 nonces per scan
    assert results_cap(1 << 224) > 1 << 32  # difficulty-1-ish: no cap in practice
    settings = MinerSettings(chunk_seconds=0.25, min_chunk=1024, nonce_space=1 << 20)
    engine = HashingEngine(settings, MinerStats("hashlib", 1, 0.0), lambda share: None)
    assert engine._next_chunk(100_000, 0.1) == 250_000
    assert engine._next_chunk(100_000, 10.0) == 2_500
    assert engine._next_chunk(100_000, 0.0001) == 400_000  # grows at most 4x per scan
    assert engine._next_chunk(900_000, 0.0001) == 1 << 20  # never past the nonce space
    assert engine._next_chunk(10, 10.0) == 1024
