"""The HTTP API and /metrics on a real socket, over real stats, a real SQLite ledger and a
real job built from mainnet block 482683."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.server import ApiServer
from hashfarm.chain.block import Block
from hashfarm.pool.jobs import PoolJob, Template, TemplateTx, build_job, payout_outputs
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage.sqlite import SQLiteLedger
from realdata import load_block_bytes

T0 = 1_750_000_000.0
MINER = "RWzHLjYTCWm6GxZK8ZBrRd4e5HvYBrJRkV.rig-1"  # a bcoin regtest address as a worker name


def mainnet_job() -> PoolJob:
    """The job a pool would have handed out for block 482683 (paying its real coinbase)."""
    block = Block.parse(load_block_bytes("mainnet-482683"))
    h, coinbase = block.header, block.transactions[0]
    template = Template(
        height=block.height_from_coinbase(),
        version=h.version,
        prev_hash=h.prev_hash,
        bits=h.bits,
        curtime=h.time,
        mintime=h.time - 3600,
        coinbase_value=sum(o.value for o in coinbase.outputs),
        transactions=tuple(TemplateTx(t.serialize(), t.txid(), 0) for t in block.transactions[1:]),
        witness_commitment=block.witness_commitment_in_coinbase(),
        coinbase_aux=b"",
        longpollid=None,
    )
    script = coinbase.outputs[0].script_pubkey
    return build_job(
        1,
        1,
        template,
        script,
        payout_outputs(None, 0.0),
        tag=b"/t/",
        extranonce2_size=8,
        clean=True,
    )


class RunningPool:
    """The two things the API reads from a pool: its sessions and its current job."""

    def __init__(self, connections: int, job: PoolJob | None) -> None:
        self._sessions = [object() for _ in range(connections)]
        self._job = job

    def sessions(self) -> list[object]:
        return self._sessions

    def current_job(self) -> PoolJob | None:
        return self._job


def share(worker: str, t: float, *, diff: float = 2.0, reason: str | None = None) -> ShareRecord:
    return ShareRecord(
        worker,
        worker.split(".")[0],
        "1",
        482683,
        diff,
        diff * 3,
        reason is None,
        reason,
        t,
        "0000abcd",
        None,
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, PoolStats, SQLiteLedger]]:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    stats = PoolStats(clock=lambda: T0 + 60)
    info = PoolInfo(network="regtest", mode="solo", stratum_port=3333, started=T0)
    server = ApiServer(
        ReadModel(info, RunningPool(3, mainnet_job()), stats, ledger), "127.0.0.1", 0
    )
    port = await server.start()
    yield f"http://127.0.0.1:{port}", stats, ledger
    await server.stop()
    await ledger.close()


async def get(url: str) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        body = await resp.text()
        doc = await resp.json(content_type=None) if "json" in resp.content_type else None
        return resp.status, doc, body


async def test_pool_document_reports_connections_hashrate_and_the_real_job(api: Any) -> None:
    base, stats, _ = api
    for i in range(60):  # one difficulty-2 share a second for a minute
        stats.on_share(share(MINER, T0 + i))
    stats.on_share(share(MINER, T0 + 1, reason="stale"))
    status, doc, _ = await get(f"{base}/api/pool")
    assert status == 200
    assert (doc["network"], doc["mode"], doc["connections"], doc["workers"]) == (
        "regtest",
        "solo",
        3,
        1,
    )
    # At T0+60 the 1-minute window holds the 59 shares of T0+1..T0+59.
    assert doc["hashrate"]["1m"] == pytest.approx(59 * 2 * 2**32 / 60)
    assert doc["hashrate_text"]["1m"] == "8.45 GH/s"
    assert doc["shares"] == {"accepted": 60, "rejected": {"stale": 1}}
    job = doc["job"]
    assert job["height"] == 482683
    assert job["prev_hash"] == "0000000000000000004f8568aa0bc28c7ca94785da07a49272f7124516aaac87"
    assert (job["bits"], job["transactions"]) == ("18013ce9", 11)
    assert job["coinbase_value"] == 1256817877


async def test_workers_list_and_one_worker_by_name(api: Any) -> None:
    base, stats, _ = api
    stats.on_share(share(MINER, T0 + 10, diff=1.0))
    stats.on_share(share("bob.rig", T0 + 10, diff=8.0))
    status, workers, _ = await get(f"{base}/api/workers")
    assert status == 200
    assert [w["name"] for w in workers] == ["bob.rig", MINER]
    status, one, _ = await get(f"{base}/api/workers/{MINER}")
    assert status == 200
    assert (one["account"], one["shares_accepted"], one["best_share"]) == (
        MINER.split(".")[0],
        1,
        3.0,
    )
    status, missing, _ = await get(f"{base}/api/workers/nobody.rig")
    assert status == 404
    assert "nobody.rig" in missing["error"]


async def test_blocks_come_from_the_ledger_newest_first(api: Any) -> None:
    base, _, ledger = api
    for height, ok in ((500, True), (501, False)):
        await ledger.record_block(
            BlockRecord(
                height,
                f"{height:064x}",
                5_000_000_000,
                MINER,
                MINER.split(".")[0],
                T0 + height,
                ok,
                None if ok else "high-hash",
            )
        )
    status, blocks, _ = await get(f"{base}/api/blocks?limit=10")
    assert status == 200
    assert [(b["height"], b["accepted_by_node"], b["node_verdict"]) for b in blocks] == [
        (501, False, "high-hash"),
        (500, True, None),
    ]
    status, error, _ = await get(f"{base}/api/blocks?limit=lots")
    assert status == 400
    assert "limit must be an integer" in error["error"]


async def test_metrics_parse_as_prometheus_text_with_the_pool_figures(api: Any) -> None:
    base, stats, _ = api
    stats.on_share(share('odd"name\\.rig', T0 + 5))
    stats.on_share(share(MINER, T0 + 5, reason="duplicate"))
    status, _, text = await get(f"{base}/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("hashfarm_pool_connections", ())] == 3
    assert samples[("hashfarm_pool_shares_accepted_total", ())] == 1
    assert samples[("hashfarm_pool_shares_rejected_total", (("reason", "duplicate"),))] == 1
    assert samples[("hashfarm_pool_shares_rejected_total", (("reason", "stale"),))] == 0
    assert samples[("hashfarm_pool_job_height", ())] == 482683
    key = ("hashfarm_worker_hashrate_hps", (("window", "1m"), ("worker", 'odd"name\\.rig')))
    assert samples[key] == pytest.approx(2 * 2**32 / 55)
