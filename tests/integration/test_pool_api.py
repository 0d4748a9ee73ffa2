"""The HTTP API and /metrics on a real socket: over real stats, a real SQLite ledger and a
real job built from mainnet block 482683; then over the real pool on the regtest node."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hashfarm.api.readmodel import PoolInfo, ReadModel, WorkerPages, worker_json
from hashfarm.api.server import ApiServer
from hashfarm.chain.block import Block
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.cli.pool import running_pool
from hashfarm.node.bcoin import free_port
from hashfarm.node.template import Template
from hashfarm.pool.bans import BanList
from hashfarm.pool.jobs import PoolJob, build_job, payout_outputs
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.settings import (
    BanSettings,
    HttpSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
    StratumSettings,
    VardiffSettings,
)
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage.sqlite import SQLiteLedger
from idle_pool import NoBlocks
from nodes import RegtestNode
from realdata import load_block_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the load generator
from loadgen import connect_many

T0 = 1_750_000_000.0
MINER = "RWzHLjYTCWm6GxZK8ZBrRd4e5HvYBrJRkV.rig-1"  # a bcoin regtest address as a worker name


def mainnet_job() -> PoolJob:
    """The job a pool would have handed out for block 482683 (paying its real coinbase)."""
    block = Block.parse(load_block_bytes("mainnet-482683"))
    template = Template.from_block(block)
    script = block.transactions[0].outputs[0].script_pubkey
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
    """What the API reads from a pool: its sessions, its current job and its ban list."""

    def __init__(self, connections: int, job: PoolJob | None) -> None:
        self._sessions = [object() for _ in range(connections)]
        self._job = job
        self.bans = BanList(BanSettings())

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
    status, page, _ = await get(f"{base}/api/workers")
    assert status == 200
    assert [w["name"] for w in page["workers"]] == ["bob.rig", MINER]
    assert (page["total"], page["limit"], page["offset"]) == (2, 100, 0)
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


async def test_10000_workers_come_in_bounded_pages_in_the_order_of_the_whole_list() -> None:
    """Any client could ask for every worker at once (3.5 MB, half a second of the event
    loop at 10,000). Now a page holds at most 1000, 100 unless asked, with the total; the
    pages, walked within the shared ranking's 2 s, are the whole list in its order."""
    stats = PoolStats(clock=lambda: T0 + 60)
    for i in range(10_000):  # hashrates from 1 to 100 shares' worth, many equal (name order)
        stats.on_share(share(f"acct{i // 10}.rig{i % 10}", T0 + 30, diff=1.0 + i % 100))
    pages = WorkerPages(ttl=600.0)  # the walk within one ranking, however slow this machine
    model = ReadModel(PoolInfo("regtest", "solo", 3333, T0), RunningPool(0, None), stats,
                      NoBlocks(), pages)  # fmt: skip
    server = ApiServer(model, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{await server.start()}"
    try:
        status, page, body = await get(f"{base}/api/workers")
        assert status == 200
        assert (page["total"], page["limit"], page["offset"]) == (10_000, 100, 0)
        assert len(page["workers"]) == 100
        one_worker = len(body) / 100
        assert len(body) < 100 * 600  # bounded: ~100 workers' worth, not 10,000's
        whole = [w.name for w in stats.workers()]
        walked: list[str] = []
        for offset in range(0, 10_000, 1000):
            status, page, body = await get(f"{base}/api/workers?limit=1000&offset={offset}")
            assert status == 200
            assert len(page["workers"]) == 1000
            assert len(body) < 1000 * one_worker * 1.2  # the largest page: 1000 workers
            walked += [w["name"] for w in page["workers"]]
        assert walked == whole  # busiest first, then by name, as PoolStats.workers()
        assert page["workers"][-1] == worker_json(stats.worker(whole[-1]))  # type: ignore[arg-type]
        assert pages.rankings == 1  # one ranking shared by the eleven requests
        status, page, _ = await get(f"{base}/api/workers?offset=10000")
        assert (status, page["total"], page["workers"]) == (200, 10_000, [])
        status, page, _ = await get(f"{base}/api/workers?limit=2000")
        assert status == 400
        assert "from 1 to 1000" in page["error"]
    finally:
        await server.stop()


async def test_a_workers_page_is_shared_for_the_ranking_time() -> None:
    """Many pollers of the same page cost one ranking and one encoding per 2 s; after
    that a new share shows."""
    now = [100.0]
    stats = PoolStats(clock=lambda: T0 + 60)
    stats.on_share(share("a.rig", T0 + 30, diff=1.0))
    pages = WorkerPages(ttl=2.0, clock=lambda: now[0])
    model = ReadModel(PoolInfo("regtest", "solo", 3333, T0), RunningPool(0, None), stats,
                      NoBlocks(), pages)  # fmt: skip
    server = ApiServer(model, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{await server.start()}"
    try:
        first = (await get(f"{base}/api/workers"))[2]
        stats.on_share(share("b.rig", T0 + 30, diff=8.0))
        now[0] += 1.9
        assert (await get(f"{base}/api/workers"))[2] == first  # shared: b not there yet
        now[0] += 0.2
        _, page, _ = await get(f"{base}/api/workers")
        assert [w["name"] for w in page["workers"]] == ["b.rig", "a.rig"]
        assert pages.rankings == 2
    finally:
        await server.stop()


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


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("/api/blocks?limit=²", "limit must be an integer from 1 to 1000, not '²'"),  # isdigit()
        ("/api/blocks?limit=%D9%A3", "limit must be an integer"),  # Arabic-Indic three
        ("/api/blocks?limit=%EF%BC%95", "limit must be an integer"),  # fullwidth five
        ("/api/blocks?limit=1_0", "limit must be an integer"),  # int() takes underscores
        ("/api/blocks?limit=%2010", "limit must be an integer"),  # ...and spaces
        ("/api/blocks?limit=1001", "from 1 to 1000"),
        ("/api/blocks?limit=0", "from 1 to 1000"),
        ("/api/blocks?limit=", "limit must be an integer"),
        ("/api/blocks?limit=" + "9" * 5000, "limit must be an integer"),
        ("/api/blocks?limit=5&limit=6", "'limit' given more than once"),
        ("/api/blocks?lmit=5", "unknown query parameter 'lmit' (this route takes limit)"),
        ("/api/pool?verbose=1", "unknown query parameter 'verbose'"),
        ("/api/workers?%FF=1", "unknown query parameter"),
        ("/api/workers?limit=1001", "limit must be an integer from 1 to 1000"),
        ("/api/workers?limit=0", "limit must be an integer from 1 to 1000"),
        ("/api/workers?offset=-1", "offset must be an integer"),
        ("/api/workers?offset=1000000000", "offset must be an integer from 0 to 999999999"),
        ("/api/workers?all=1", "unknown query parameter 'all'"),
        ("/metrics?name[]=x", "unknown query parameter"),
    ],
)
async def test_every_bad_query_value_is_a_400_naming_the_parameter(
    api: Any, query: str, message: str
) -> None:
    """`?limit=²` was a 500: str.isdigit() accepts superscripts, int() refuses them."""
    base, _, _ = api
    status, doc, _ = await get(base + query)
    assert status == 400, doc
    assert message in doc["error"]
    assert len(doc["error"]) < 300  # a huge value is not echoed back whole


async def test_the_default_and_an_in_range_limit_still_work(api: Any) -> None:
    base, _, ledger = api
    for height in range(3):
        await ledger.record_block(
            BlockRecord(height, f"{height:064x}", 1, MINER, "a", T0 + height, True, None)
        )
    assert len((await get(f"{base}/api/blocks"))[1]) == 3
    assert [b["height"] for b in (await get(f"{base}/api/blocks?limit=2"))[1]] == [2, 1]
    assert [b["height"] for b in (await get(f"{base}/api/blocks?limit=0001"))[1]] == [2]


async def test_errors_are_json_for_unknown_routes_methods_and_odd_names(api: Any) -> None:
    base, _, _ = api
    status, doc, _ = await get(f"{base}/api/nothing")
    assert (status, doc) == (404, {"error": "Not Found"})
    async with aiohttp.ClientSession() as http, http.post(f"{base}/api/pool") as resp:
        assert (resp.status, await resp.json()) == (405, {"error": "Method Not Allowed"})
        assert resp.headers["Allow"] == "GET,HEAD"
    status, doc, _ = await get(f"{base}/api/workers/%00%0Aforged")
    assert status == 404
    assert "'\\x00\\nforged'" in doc["error"]  # shown as repr: no raw control characters
    status, doc, _ = await get(f"{base}/api/workers/" + "w" * 4000)
    assert status == 404
    assert len(doc["error"]) < 200


async def test_a_ledger_that_cannot_be_read_is_a_503_not_a_traceback(
    api: Any, tmp_path: Path
) -> None:
    base, _, _ = api
    with sqlite3.connect(tmp_path / "pool.sqlite3") as other:  # the table goes away under it
        other.execute("DROP TABLE blocks")
    status, doc, _ = await get(f"{base}/api/blocks")
    assert status == 503
    assert "ledger" in doc["error"]
    status, _, _ = await get(f"{base}/api/pool")
    assert status == 200


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


@pytest.mark.node
async def test_the_api_of_a_real_pool_shows_what_its_miners_did(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    """`hashfarm pool`'s wiring on the regtest node: shares from two Stratum connections
    (none of them a block) show up in /api/pool, /api/workers/{name} and /metrics."""
    http_port = free_port()
    settings = PoolSettings(
        node=NodeSettings(rpc_url=regtest_node.rpc_url, rpc_password=regtest_node.api_key),
        stratum=StratumSettings(port=0),
        vardiff=VardiffSettings(initial=1e-11, enabled=False),  # network: ~4.7e-10
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'pool.sqlite3'}"),
        http=HttpSettings(port=http_port),
    )
    address = await regtest_node.payout_address()
    async with running_pool(settings) as running:
        miners = await connect_many("127.0.0.1", running.pool.stratum_port,
                                    [f"{address}.a", f"{address}.b"])  # fmt: skip
        job = miners[0].job
        assert job is not None
        network = bits_to_difficulty(job.bits)
        for miner, count in zip(miners, (30, 20), strict=True):
            shares = miner.prepare(count, keep=lambda d, m=miner: m.difficulty <= d < network)
            await miner.submit(shares + shares[:3])  # three duplicates each
        base = f"http://127.0.0.1:{http_port}"
        _, pool_doc, _ = await get(f"{base}/api/pool")
        _, worker_a, _ = await get(f"{base}/api/workers/{address}.a")
        _, _, text = await get(f"{base}/metrics")
        bad_status, bad, _ = await get(f"{base}/api/blocks?limit=²")  # was a 500
        async with regtest_node.rpc() as rpc:
            height = await rpc.getblockcount()
        for miner in miners:
            await miner.close()
    assert (bad_status, bad["error"]) == (400, "limit must be an integer from 1 to 1000, not '²'")
    assert pool_doc["connections"] == 2
    assert pool_doc["bans"] == 0
    assert pool_doc["shares"] == {"accepted": 50, "rejected": {"duplicate": 6}}
    assert pool_doc["job"]["height"] == height + 1
    assert (worker_a["shares_accepted"], worker_a["shares_rejected"]) == (30, {"duplicate": 3})
    assert worker_a["hashrate"]["1m"] > 0
    assert "hashfarm_pool_shares_accepted_total 50" in text.splitlines()
    assert 'hashfarm_pool_shares_rejected_total{reason="duplicate"} 6' in text.splitlines()
