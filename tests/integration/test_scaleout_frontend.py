"""A front end's work for miners that arrive, in-process on the regtest node: its
extranonce1 range and job-id prefix, a miner resuming another front end's session, and a
clean first job; the single process's first job stays as it was."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hashfarm.pool.settings import ClusterSettings
from nodes import RegtestNode
from unit.pool.harness import pool_settings, running_pool
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node


async def first_job_after_a_refresh(
    node: RegtestNode, tmp_path: Path, frontend_id: int | None, session_id: str | None
) -> tuple[StratumTestMiner, bool]:
    """A miner joining after a same-tip refresh (clean_jobs false for the pool's own
    fan-out): its extranonce1 and whether its first notify said clean_jobs."""
    user = await node.payout_address()
    settings = pool_settings(node.rpc_url, node.api_key, tmp_path)
    settings = replace(settings, cluster=ClusterSettings(frontend_id=frontend_id))
    async with running_pool(settings, node.rpc()) as (pool, _):
        await pool.watcher.fetch("refresh for the test")  # same tip: not clean
        miner = StratumTestMiner(pool.stratum_port, f"{user}.rig")
        await miner.connect()
        assert (await miner.subscribe(session_id)).ok
        assert (await miner.authorize()).ok
        job = await miner.wait_job()
        (own,) = pool.jobs.current_jobs()  # the job the pool built for this miner's address
        assert own.job_id == job.job_id
        assert own.work.clean_jobs is False  # what the fan-out of the refresh says
        await miner.close()
    return miner, job.clean_jobs


async def test_a_miner_from_another_front_end_gets_this_ones_range_and_a_clean_job(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    other = "07a1b2c3"  # front end 7's extranonce1, offered as the session id
    miner, clean = await first_job_after_a_refresh(regtest_node, tmp_path, 5, other)
    assert miner.extranonce1[0] == 5  # a fresh value of front end 5's range, no error
    assert miner.extranonce1.hex() != other
    assert miner.job is not None
    assert miner.job.job_id.startswith("05")
    assert clean is True  # the miner drops what it had on the other front end at once


async def test_the_single_process_first_job_is_unchanged(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    miner, clean = await first_job_after_a_refresh(regtest_node, tmp_path, None, "07a1b2c3")
    assert miner.extranonce1.hex() == "07a1b2c3"  # a free value is resumed, as before
    assert clean is False  # the shared line of the refresh, as before
