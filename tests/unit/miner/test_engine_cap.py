"""`max_hashrate`: the engine scans small chunks and sleeps between them to hold the cap."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.errors import ConfigError
from hashfarm.miner.engine import HashingEngine
from hashfarm.miner.protocol import FoundShare, MinerJob
from hashfarm.miner.settings import MinerSettings
from hashfarm.miner.stats import MinerStats
from hashfarm.stratum.work import Job


def test_cap_sizes_chunks_and_pauses() -> None:
    settings = MinerSettings(threads=2, max_hashrate=1000.0, chunk_seconds=0.25)
    engine = HashingEngine(settings, MinerStats("hashlib", 2, 0.0), lambda share: None)
    assert engine._capped(4096) == 125  # 500 H/s per thread, 0.25 s of it
    assert engine._capped(50) == 50  # a smaller chunk is kept
    assert engine._pause(125, 0.05) == pytest.approx(0.2)  # back on 500 H/s
    assert engine._pause(125, 0.5) == 0.0  # already slower than the cap
    slow = HashingEngine(replace(settings, max_hashrate=0.4), MinerStats("hashlib", 2, 0.0),
                         lambda share: None)  # fmt: skip
    assert slow._capped(4096) == 1  # a regtest demo: one hash at a time, 5 s apart
    assert slow._pause(1, 0.001) == pytest.approx(4.999)
    free = HashingEngine(MinerSettings(), MinerStats("hashlib", 1, 0.0), lambda share: None)
    assert free._capped(4096) == 4096
    assert free._pause(4096, 0.01) == 0.0


def test_cap_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"miner\.max_hashrate"):
        MinerSettings(max_hashrate=0.0).validate()


async def test_a_capped_engine_hashes_at_the_cap(real_job: Job) -> None:
    """Two real hashlib threads under a 40 H/s cap for one second: about 40 hashes."""
    settings = MinerSettings(threads=2, executor="thread", max_hashrate=40.0, chunk_seconds=0.25)
    stats = MinerStats("hashlib", 2, 0.0)
    shares: list[FoundShare] = []
    engine = HashingEngine(settings, stats, shares.append)
    target = difficulty_to_target(1.0)  # a mainnet share: none expected in 40 hashes
    engine.set_work(MinerJob(real_job, b"\x01\x02\x03\x04", 4, 1.0, target, 0, 0))
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    hashes = sum(m.total for m in stats.meters)
    # 5 nonces per scan per thread, one scan every 0.25 s: 4 or 5 scans each
    assert 30 <= hashes <= 60, hashes
    assert all(m.total > 0 for m in stats.meters)
    assert not shares
