"""The dashboard's pool, miner and block pages in Debian's chromium, over the real pool.

The pool (`hashfarm.cli.pool.running_pool`, solo, SQLite ledger) runs on the session's bcoin
regtest node with its HTTP API; our own Stratum miner (capped to a few hashes a second, as
in `hashfarm demo`) mines blocks through it. Each page must open without a console error,
show the figures the JSON API gives for the same thing, pass axe-core's WCAG 2 A/AA rules,
fit a phone's width, and leave a non-blank screenshot. Then, with the pool page open: a new
worker and the blocks it finds appear without a reload, and so does a block the node mines
itself (the height moves on).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from browser import PHONE, WebPage, get_json, running_web_pool
from hashfarm.api.live import LiveHub
from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.web.feed import LiveFeed, header_bits
from hashfarm.api.web.site import difficulty, number, percent
from hashfarm.chain.networks import get_network
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.cli.pool import RunningPool
from hashfarm.economics.retarget import project_retarget
from hashfarm.miner.client import StratumMiner
from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import MinerSettings, PoolURL
from hashfarm.miner.stats import MinerStats
from hashfarm.units import sats_to_btc
from nodes import RegtestNode, bcoin_address

pytestmark = pytest.mark.node

ADDRESS = bcoin_address(bytes.fromhex("0014") + bytes(range(100, 120)))
SHARE_DIFFICULTY = 2.5e-10  # every hash a share; regtest's network difficulty ~4.7e-10


@dataclass
class Site:
    base: str
    running: RunningPool
    node: RegtestNode


@contextlib.asynccontextmanager
async def mining(running: RunningPool, worker: str, hashrate: float) -> AsyncIterator[MinerStats]:
    """Our Stratum miner as `ADDRESS.worker` against the pool, capped at `hashrate` H/s."""
    settings = MinerSettings(
        user=f"{ADDRESS}.{worker}",
        backend="hashlib",
        threads=1,
        executor="thread",
        suggest_difficulty=SHARE_DIFFICULTY,
        max_hashrate=hashrate,
        output="json",
    ).validate()
    stats = MinerStats("hashlib", 1, time.monotonic())
    url = PoolURL("127.0.0.1", running.pool.stratum_port)
    miner = StratumMiner(settings, url, stats, Reporter(stats, "json", stream=io.StringIO()))
    task = asyncio.create_task(miner.run())
    try:
        yield stats
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def site(
    regtest_node: RegtestNode, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    """The pool with its pages, after one miner found two blocks; the miner is stopped so
    the figures hold still while pages and the API are compared."""
    async with running_web_pool(regtest_node, tmp_path_factory.mktemp("web")) as (base, running):
        async with mining(running, "rig1", 4.0):
            await wait_for(lambda: running.stats.pool().blocks_found >= 2, 90, "2 blocks")
        await asyncio.sleep(1.5)  # the feed's next look: tip, luck
        deadline = time.monotonic() + 15
        while len((await get_json(base + "/api/pool/hashrate?range=1h"))["points"]) < 2:
            assert time.monotonic() < deadline, "the chart's history has no second sample"
            await asyncio.sleep(0.5)  # one sample per 10 s: a line needs two
        yield Site(base, running, regtest_node)


async def rpc_hash(site: Site, height: int) -> str:
    async with site.node.rpc() as rpc:
        return await rpc.getblockhash(height)


def hashrate_value(text: str) -> float:
    """'1.23 kH/s' -> 1230.0."""
    match = re.fullmatch(r"([\d.]+) ([kMGTPE]?)H/s", text)
    assert match, text
    scale = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    return float(match.group(1)) * scale[match.group(2)]


async def check_page(web: WebPage, name: str) -> None:
    """Accessibility, a phone's width and a kept screenshot (desktop and phone)."""
    assert await web.axe() == []
    await web.screenshot(name)
    await web.page.set_viewport_size(PHONE)
    assert not await web.overflows_horizontally(), f"{name} is wider than a phone"
    await web.screenshot(f"{name}-phone")


async def test_pool_overview_shows_the_api_figures(site: Site, web_page: WebPage) -> None:
    page = await web_page.open(site.base + "/")
    pool = await get_json(site.base + "/api/pool")
    blocks = await get_json(site.base + "/api/blocks?limit=10")
    stat = lambda key: web_page.text(f"#stat-{key} [data-value]")  # noqa: E731
    assert await stat("accepted") == number(pool["shares"]["accepted"])
    assert await stat("blocks") == number(pool["blocks"]["found"])
    assert await stat("connections") == number(pool["connections"])
    assert await stat("workers") == number(pool["workers"])
    assert await stat("best") == difficulty(pool["best_share"])
    async with site.node.rpc() as rpc:  # the tip and its difficulty: from the node itself
        tip = await rpc.getblockcount()
        bits = (await rpc.getblockheader(await rpc.getblockhash(tip)))["bits"]
    assert await stat("height") == number(tip)
    assert await stat("difficulty") == difficulty(bits_to_difficulty(header_bits(bits)))
    if pool["job"] is not None:  # solo: a job exists while a miner is connected
        assert pool["job"]["height"] == tip + 1
    shown = hashrate_value(await stat("hashrate"))  # the 5-minute window moves on with time
    assert shown == pytest.approx(pool["hashrate"]["5m"], rel=0.25)
    assert "difficulty never changes on regtest" in await web_page.text("#stat-retarget")
    rows = page.locator("#pool-blocks tr[data-block]")
    assert [await r.get_attribute("data-block") for r in await rows.all()] == [
        b["hash_hex"] for b in blocks
    ]
    first = rows.first
    assert (await first.locator("td").nth(0).inner_text()) == number(blocks[0]["height"])
    assert (
        await first.locator("td").nth(2).inner_text()
    ) == f"{sats_to_btc(blocks[0]['reward_sats']):.8f}"
    assert (await first.locator("td").nth(4).inner_text()) == "accepted"
    luck = await first.locator("td").nth(6).inner_text()
    assert luck.endswith("%"), f"the newest block's luck is worked out: {luck!r}"
    workers = await get_json(site.base + "/api/workers")
    names = [await r.get_attribute("data-worker") for r in await page.locator(
        "#pool-workers tr[data-worker]").all()]  # fmt: skip
    assert names == [w["name"] for w in workers["workers"]]
    # The chart: uPlot drew the feed's samples (JSON from the chart's own route).
    await page.wait_for_selector('#hashrate-chart[data-loaded="chart"]', timeout=5000)
    points = (await get_json(site.base + "/api/pool/hashrate?range=1h"))["points"]
    assert int(await page.get_attribute("#hashrate-chart", "data-points")) <= len(points)
    assert await page.locator("#hashrate-chart canvas").count() == 1
    await page.click('button[data-chart-range="24h"]')
    await page.wait_for_selector('#hashrate-chart[data-range="24h"][data-loaded]')
    await check_page(web_page, "pool")


async def test_miner_page_shows_the_api_figures(site: Site, web_page: WebPage) -> None:
    page = await web_page.open(f"{site.base}/miner/{ADDRESS}")
    doc = await get_json(f"{site.base}/api/miners/{ADDRESS}")
    worker = await get_json(f"{site.base}/api/workers/{ADDRESS}.rig1")
    assert doc["workers"][0]["shares_accepted"] == worker["shares_accepted"]
    assert await web_page.text("#m-accepted [data-value]") == number(worker["shares_accepted"])
    assert await web_page.text("#m-rejected [data-value]") == number(doc["rejected_total"])
    assert await web_page.text("#m-best [data-value]") == difficulty(worker["best_share"])
    assert await web_page.text("#m-blocks [data-value]") == number(worker["blocks_found"])
    assert await web_page.text("#m-workers [data-value]") == "1"
    assert worker["blocks_found"] >= 2
    # Odds at the account's 1 h hashrate, which keeps moving: same figure within a margin.
    day = float((await web_page.text("#odds-day [data-value]")).split()[0]) / 100
    assert doc["odds"]["probability"]["day"] == pytest.approx(day, rel=0.25)
    assert await web_page.text("#odds-year [data-value]") == percent(1.0)  # regtest: certain
    assert await page.locator("#m-workers tr[data-worker]").count() == 1
    found = [await r.get_attribute("data-block") for r in await page.locator(
        "tr[data-block]").all()]  # fmt: skip
    assert found == [b["hash_hex"] for b in doc["blocks"]]
    assert len(found) >= 2
    await check_page(web_page, "miner")


async def test_miner_lookup_finds_the_address_page(site: Site, web_page: WebPage) -> None:
    page = await web_page.open(site.base + "/miner")
    await page.fill("#address", f"{ADDRESS}.rig1")  # a full user name finds its account
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.base}/miner/{ADDRESS}")
    await page.wait_for_selector("#m-accepted")
    await check_page(web_page, "miner-lookup")


async def test_block_pages_match_the_api_and_the_node(site: Site, web_page: WebPage) -> None:
    blocks = await get_json(site.base + "/api/blocks?limit=50")
    page = await web_page.open(site.base + "/blocks")
    hashes = [await r.get_attribute("data-block") for r in await page.locator(
        "tr[data-block]").all()]  # fmt: skip
    assert hashes == [b["hash_hex"] for b in blocks]
    await check_page(web_page, "blocks")
    newest = blocks[0]["hash_hex"]
    await web_page.page.set_viewport_size({"width": 1280, "height": 900})
    page = await web_page.open(f"{site.base}/blocks/{newest}")
    doc = await get_json(f"{site.base}/api/blocks/{newest}")
    async with site.node.rpc() as rpc:
        tip = await rpc.getblockcount()
    assert doc["in_chain"] is True
    assert doc["confirmations"] == tip - doc["height"] + 1
    assert await web_page.text("#b-hash") == newest
    assert await web_page.text("#b-height") == number(doc["height"])
    assert await web_page.text("#b-confirmations") == number(doc["confirmations"])
    assert (await web_page.text("#b-reward")).startswith(f"{sats_to_btc(doc['reward_sats']):.8f}")
    assert await web_page.text("#b-finder") == doc["finder_worker"]
    assert doc["finder_account"] == ADDRESS
    rows = page.locator("#b-coinbase tbody tr")
    assert await rows.count() == len(doc["coinbase"])
    pays = doc["coinbase"][0]
    assert pays["pays_finder"] is True
    assert pays["value_sats"] == doc["reward_sats"]
    assert await rows.first.locator("td").nth(3).inner_text() == "yes"
    await check_page(web_page, "block")


async def test_an_unknown_block_or_miner_is_a_plain_404(site: Site, web_page: WebPage) -> None:
    web_page.allow(r"HTTP 404|status of 404")
    response = await web_page.page.goto(f"{site.base}/blocks/{'ab' * 32}")
    assert response.status == 404
    assert "has not submitted block" in await web_page.text("main")
    missing = await web_page.page.goto(f"{site.base}/miner/{'x' * 257}")
    assert missing.status == 404


async def test_new_worker_blocks_and_node_tip_appear_live(site: Site, web_page: WebPage) -> None:
    page = await web_page.open(site.base + "/")
    before = set(await page.locator("#pool-blocks tr[data-block]").evaluate_all(
        "rows => rows.map(r => r.dataset.block)"))  # fmt: skip
    height = await web_page.text("#stat-height [data-value]")
    async with mining(site.running, "rig2", 4.0):
        # a new worker: the live log says so, then its block shows up in the table
        await page.wait_for_selector('#live-log li[data-event="worker"]', timeout=20_000)
        assert "rig2" in await web_page.text('#live-log li[data-event="worker"]')
        await page.wait_for_function(
            """(before) => [...document.querySelectorAll('#pool-blocks tr[data-block]')]
                .some(r => !before.includes(r.dataset.block))""",
            arg=sorted(before),
            timeout=60_000,
        )
    assert await web_page.text("#stat-height [data-value]") != height
    found = await get_json(site.base + "/api/blocks?limit=1")
    assert found[0]["finder_worker"].endswith(".rig2")
    # A block the node mines by itself (not the pool's): the height moves on, live.
    (mined,) = await site.node.mine(1)
    async with site.node.rpc() as rpc:
        tip = await rpc.getblockcount()
    assert await rpc_hash(site, tip) == mined
    try:
        await page.wait_for_function(
            """(h) => { const el = document.querySelector('#stat-height [data-value]');
                        return el !== null && el.textContent.trim() === h; }""",
            arg=number(tip),
            timeout=20_000,
        )
    except Exception:
        pool = await get_json(site.base + "/api/pool")
        shown = await page.inner_html("#pool-summary")
        raise AssertionError(f"page {shown}, API {pool['job']}, node tip {tip}") from None
    assert await page.locator('#live-log li[data-event="tip"]').count() >= 1
    await web_page.screenshot("pool-live")


async def test_retarget_projection_reads_the_epoch_from_the_node(site: Site) -> None:
    """The feed's projection on a retargeting network, from the node's own headers: the
    session's regtest chain read as if it were mainnet's (2016-block epochs from genesis)."""
    running = site.running
    model = ReadModel(PoolInfo("mainnet", "solo", 0, time.time()), running.pool, running.stats,
                      running.ledger)  # fmt: skip
    feed = LiveFeed(lambda: model, LiveHub())
    async with site.node.rpc() as rpc:
        if (await rpc.getblockcount()) % 2016 == 0:  # an epoch's first block: mine past it
            await site.node.mine(1)
        tip = await rpc.getblockcount()
        tip_hash = await rpc.getblockhash(tip)
        header = await rpc.getblockheader(tip_hash)
        start = tip - tip % 2016
        first = await rpc.getblockheader(await rpc.getblockhash(start))
    await feed._retarget(model, tip, tip_hash)
    want = project_retarget(tip, header_bits(header["bits"]), int(first["time"]),
                            int(header["time"]), get_network("mainnet"))  # fmt: skip
    assert feed.retarget is not None
    assert feed.retarget["projected_difficulty"] == want.projected_difficulty
    assert feed.retarget["retarget_height"] == start + 2016
    assert feed.retarget["blocks_left"] == start + 2016 - tip


async def test_an_unseen_address_and_a_bad_name_say_so(site: Site, web_page: WebPage) -> None:
    page = await web_page.open(f"{site.base}/miner/nobody-here")
    assert "has no share from nobody-here" in await web_page.text("main")
    assert (await get_json(f"{site.base}/api/miners/nobody-here"))["seen"] is False
    web_page.allow(r"HTTP 400|status of 400")
    response = await page.goto(f"{site.base}/miner?address=not%2Fan%0Aaddress")
    assert response is not None
    assert response.status == 400
    assert "is not an address or user name" in await web_page.text("[role=alert]")
