"""The notify fan-out over real sockets: steady sessions get the bare shared line, a session
whose difficulty changed gets set_difficulty first, and each job is judged at its difficulty.

A real `Pool` (mainnet, pooled) with a template from a real block; only the node is absent:
templates are handed to the pool the way its tip watcher does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from pool_helpers import template_of
from stratum_client import StratumTestMiner

from hashfarm.chain.block import Block
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import PoolSettings, StorageSettings, StratumSettings
from hashfarm.pool.storage import make_ledger
from hashfarm.stratum import messages as m

PAYOUT = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"


@pytest.fixture
async def pool(tmp_path: Path, small_block: Block) -> AsyncIterator[Pool]:
    settings = PoolSettings(
        network="mainnet",
        mode="pooled",
        payout_address=PAYOUT,
        stratum=StratumSettings(port=0, raise_nofile=False),
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'pool.sqlite3'}"),
    )
    ledger = make_ledger(settings.storage)
    await ledger.start()
    pool = Pool(settings, None, ledger)  # type: ignore[arg-type]  # no node: templates by hand
    await pool.server.start()
    await pool._on_template(template_of(small_block), "test")
    yield pool
    await pool.server.stop()
    await ledger.close()


async def new_tip(pool: Pool, n: int) -> None:
    tpl = pool.jobs.template
    assert tpl is not None
    await pool._on_template(replace(tpl, prev_hash=bytes([n]) * 32, height=tpl.height + 1), "tip")


async def test_fanout_sends_set_difficulty_only_where_it_changed(pool: Pool) -> None:
    steady, changed = (StratumTestMiner(pool.stratum_port, f"{PAYOUT}.{w}") for w in "ab")
    for miner in (steady, changed):
        await miner.start()
    assert (await changed.request(m.SUGGEST_DIFFICULTY, 512)).ok
    assert changed.difficulty == 512.0  # announced at once, applies from the next job
    sessions = {next(iter(s.workers))[-1]: s for s in pool.sessions()}
    assert sessions["a"].steady
    assert not sessions["b"].steady

    for miner in (steady, changed):
        miner.notifications.clear()
    await new_tip(pool, 1)
    jobs = [await miner.wait_job() for miner in (steady, changed)]
    assert jobs[0] == jobs[1]
    assert jobs[0].clean_jobs
    assert [n.method for n in steady.notifications] == [m.NOTIFY]
    assert [n.method for n in changed.notifications] == [m.NOTIFY]  # 512 was already sent
    job = pool.current_job()
    assert sessions["b"].difficulty_for(job) == 512.0
    assert sessions["b"].steady
    assert sessions["a"].difficulty_for(job) == 1.0

    # A retarget clamps every session's difficulty: set_difficulty, then the clean job.
    tiny = replace(pool.jobs.template, bits=0x207FFFFF)  # type: ignore[arg-type]
    for miner in (steady, changed):
        miner.notifications.clear()
    await pool._on_template(replace(tiny, prev_hash=bytes([2]) * 32), "retarget")
    for miner in (steady, changed):
        await miner.wait_job()
        assert [n.method for n in miner.notifications] == [m.SET_DIFFICULTY, m.NOTIFY]
        assert miner.difficulty == pytest.approx(tiny.difficulty)
        await miner.close()
    await asyncio.sleep(0)
