"""The dashboard's feed and page data over real statistics and a real SQLite ledger: bounded
hashrate history, the events a look publishes, block luck summed by the ledger, the busiest
workers and an account's workers as `/api/workers` orders them, solo odds, and the filters."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from hashfarm.api.live import LiveHub
from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.web.feed import RANGES, HashrateHistory, LiveFeed
from hashfarm.api.web.pages_miner import account_of, odds_json
from hashfarm.api.web.site import difficulty, hashrate, number, percent, short_hash, wait
from hashfarm.chain.block import Block
from hashfarm.economics.odds import solo_odds
from hashfarm.node.template import Template
from hashfarm.pool.bans import BanList
from hashfarm.pool.jobs import PoolJob, build_job, payout_outputs
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.settings import BanSettings
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage.sqlite import SQLiteLedger
from realdata import load_block_bytes

T0 = 1_750_000_000.0


class Sessions:
    """The pool's side the feed reads: sessions (each with its `workers`) and the job."""

    def __init__(self, job: PoolJob) -> None:
        self.connected: list[Any] = []
        self.job = job
        self.bans = BanList(BanSettings())

    def sessions(self) -> list[Any]:
        return self.connected

    def current_job(self) -> PoolJob | None:
        return self.job


class Session:
    def __init__(self, *names: str) -> None:
        self.workers = {n: n.split(".")[0] for n in names}


class RecordingHub(LiveHub):
    """A real hub that also keeps what was published, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, event: str, data: dict[str, Any]) -> None:
        super().publish(event, data)
        self.sent.append((event, data))


def mainnet_job() -> PoolJob:
    block = Block.parse(load_block_bytes("mainnet-482683"))
    script = block.transactions[0].outputs[0].script_pubkey
    template = Template.from_block(block)
    return build_job(1, 1, template, script, payout_outputs(None, 0.0), tag=b"/t/",
                     extranonce2_size=8, clean=True)  # fmt: skip


def share(worker: str, t: float, diff: float = 2.0, reason: str | None = None) -> ShareRecord:
    return ShareRecord(worker, worker.split(".")[0], "1", 482683, diff, diff * 3,
                       reason is None, reason, t, "00", None)  # fmt: skip


def test_history_keeps_one_bounded_ring_per_range() -> None:
    history = HashrateHistory()
    for i in range(20_000):  # 20,000 looks a second apart: 5.6 hours
        history.sample(T0 + i, {"1m": 1.0, "5m": 5.0, "1h": 60.0, "24h": 0.0})
    one_hour = history.series("1h")
    assert len(one_hour) == RANGES["1h"][1]  # 360 points, one per 10 s: full
    assert one_hour[-1] == (T0 + 19_990, 1.0)  # the first look of the newest 10 s step
    assert all(b[0] - a[0] == 10 for a, b in itertools.pairwise(one_hour))
    day = history.series("24h")
    assert len(day) == (T0 + 19_999) // 300 - T0 // 300 + 1  # steps begun: not yet full
    assert {v for _, v in day} == {5.0}  # the 5-minute window feeds the 24 h chart
    assert {v for _, v in history.series("7d")} == {60.0}
    with pytest.raises(KeyError):
        history.series("2d")


async def test_a_look_publishes_new_blocks_workers_and_tips(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    try:
        stats = PoolStats(clock=lambda: T0 + 100)
        pool = Sessions(mainnet_job())
        hub = RecordingHub()
        model = ReadModel(PoolInfo("mainnet", "solo", 3333, T0), pool, stats, ledger)
        feed = LiveFeed(lambda: model, hub, worker_every=0.0)
        pool.connected.append(Session("alice.rig1"))
        feed.look(T0 + 100)  # the first look only takes stock
        assert hub.sent == []
        assert feed.tip_height == 482682
        pool.connected.append(Session("bob.rig1", "bob.rig2"))
        stats.on_share(share("alice.rig1", T0 + 99))
        good = BlockRecord(482683, "11" * 32, 1_256_817_877, "alice.rig1", "alice", T0 + 99,
                           True, None)  # fmt: skip
        bad = BlockRecord(482683, "22" * 32, 1_256_817_877, "bob.rig1", "bob", T0 + 99.5,
                          False, "high-hash")  # fmt: skip
        stats.on_block(good)
        stats.on_block(bad)
        feed.look(T0 + 101)
        names = [e for e, _ in hub.sent]
        assert names == ["block", "block", "alert", "worker"]
        assert hub.sent[0][1]["hash_hex"] == good.hash_hex
        assert "high-hash" in hub.sent[2][1]["message"]
        assert hub.sent[3][1] == {"new": ["bob.rig1", "bob.rig2"], "new_count": 2,
                                  "connected": 3}  # fmt: skip
        feed.look(T0 + 102)  # nothing new: nothing sent
        assert len(hub.sent) == 4
        feed.worker_every = 3600.0
        pool.connected.append(Session("carol.rig1"))
        feed.look(T0 + 103)  # within worker_every of the last pass: sessions not looked at
        pool.connected.append(Session("dave.rig1"))
        pool.connected.append(Session("erin.rig1"))
        feed.look(T0 + 104)
        pool.connected.pop()  # erin left before the next pass: never announced
        assert len(hub.sent) == 4
        feed.worker_every = 0.0
        feed.look(T0 + 106)  # the next pass: one event for everyone who came meanwhile
        assert hub.sent[4] == ("worker", {"new": ["carol.rig1", "dave.rig1"], "new_count": 2,
                                          "connected": 5})  # fmt: skip
        view = feed.block_view({"height": 482683, "hash_hex": "11" * 32,
                                "accepted_by_node": True})  # fmt: skip
        assert view["confirmations"] is None  # the tip (482682) is below it: not yet counted
        await feed.stop()
    finally:
        await ledger.close()


async def test_block_luck_is_the_block_difficulty_over_the_work_since_the_last(
    tmp_path: Path,
) -> None:
    """Luck from the ledger: shares recorded between two accepted blocks, summed by SQL."""
    path = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(path)
    await ledger.start()
    try:
        job = mainnet_job()
        network_difficulty = job.template.difficulty
        first = BlockRecord(1, "aa" * 32, 1, "a.r", "a", T0 + 10, True, None)
        second = BlockRecord(2, "bb" * 32, 1, "a.r", "a", T0 + 20, True, None)
        await ledger.record_block(first)
        for i in range(1, 21):  # 20 shares of difficulty D/40: 10 before each block
            await ledger.record_share(share("a.r", T0 + i - 0.5, network_difficulty / 40))
        await ledger.record_share(share("a.r", T0 + 15, 1e30, reason="stale"))  # not counted
        await ledger.record_block(second)
        stats = PoolStats(clock=lambda: T0 + 30)
        model = ReadModel(PoolInfo("mainnet", "solo", 3333, T0), Sessions(job), stats, ledger)
        feed = LiveFeed(lambda: model, RecordingHub(), ledger_url=lambda: f"sqlite:///{path}")
        await feed._luck(model, {}, at_start=True)
        # 10 shares of D/40 = D/4 of work for a block worth D: four times as lucky as average
        assert feed.luck.get(second.hash_hex) == pytest.approx(4.0)
        assert feed.luck.get(first.hash_hex) == pytest.approx(4.0)  # shares up to its time
        await feed.stop()
    finally:
        await ledger.close()


def test_busiest_and_an_accounts_workers_match_the_workers_list() -> None:
    stats = PoolStats(clock=lambda: T0 + 600)
    for w in range(500):
        for i in range(w % 7 + 1):
            stats.on_share(share(f"acct{w % 40}.rig{w}", T0 + 600 - (w * 37 + i * 11) % 590,
                                 diff=float(1 + (w * i) % 5)))  # fmt: skip
    everyone = stats.workers()
    assert stats.busiest(25) == everyone[:25]
    assert stats.busiest(10_000) == everyone
    assert stats.ranked() == [w.name for w in everyone]  # what /api/workers pages through
    assert stats.of_account("acct7") == [w for w in everyone if w.account == "acct7"]
    assert stats.of_account("nobody") == []


def test_account_names_and_odds() -> None:
    assert account_of("bc1qxyz.rig-1") == "bc1qxyz"
    assert account_of("  alice  ") == "alice"
    assert account_of("alice@example.rig") == "alice@example"  # pooled: any printable name
    assert account_of("bad/name") is None
    assert account_of("bad\nname") is None
    assert account_of("x" * 256) == "x" * 256
    assert account_of("x" * 257) is None
    assert account_of("") is None
    odds = odds_json(1e12, 1e14)  # 1 TH/s against difficulty 1e14 (a Bitaxe's ~2025 lot)
    want = solo_odds(1e12, 1e14)
    assert odds["probability"] == {k: want.probability[k] for k in ("day", "month", "year")}
    assert odds["expected_days_to_block"] == want.expected_days_to_block
    assert odds_json(0.0, 1e14)["probability"] is None
    assert "no job" in odds_json(1e12, None)["note"]


def test_filters_write_figures_as_miners_read_them() -> None:
    assert hashrate(0.4294967296) == "0.43 H/s"
    assert hashrate(1.23e12) == "1.23 TH/s"
    assert number(1234567) == "1,234,567"
    assert number(None) == "—"
    assert difficulty(888_171_856_257.3) == "888 G"
    assert difficulty(4.656542373906925e-10) == "4.66e-10"
    assert percent(0.5) == "50.00 %"
    assert percent(3.2e-7) == "3.20e-05 %"
    assert percent(1.0) == "100.00 %"
    assert short_hash("ab" * 32) == "abababababab…ababab"
    assert short_hash("short") == "short"
    assert wait(1e-4) == "9 s"
    assert wait(0.01) == "14 min"
    assert wait(0.5) == "12.0 h"
    assert wait(45.2) == "45 days"
    assert wait(3.2 * 365) == "3.2 years"
    assert wait(12_345 * 365) == "12,345 years"


class CountingLedger(SQLiteLedger):
    """The real SQLite ledger, counting its block reads."""

    reads = 0

    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        self.reads += 1
        return await super().recent_blocks(limit)


async def test_a_herd_of_page_views_reads_the_ledger_once(tmp_path: Path) -> None:
    ledger = CountingLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    try:
        for height in range(1, 81):
            await ledger.record_block(BlockRecord(height, f"{height:064x}", 1, "a.r", "a",
                                                  T0 + height, True, None))  # fmt: skip
        stats = PoolStats(clock=lambda: T0 + 100)
        model = ReadModel(PoolInfo("mainnet", "solo", 3333, T0), Sessions(mainnet_job()),
                          stats, ledger)  # fmt: skip
        feed = LiveFeed(lambda: model, RecordingHub())
        views = await asyncio.gather(*(feed.recent_blocks(model, 10) for _ in range(500)))
        assert ledger.reads == 1
        assert all(v == views[0] for v in views)
        assert [b["height"] for b in views[0]] == list(range(80, 70, -1))
        assert (await feed.recent_blocks(model, 50))[-1]["height"] == 31  # within the read
        assert ledger.reads == 1
        assert len(await feed.recent_blocks(model, 80)) == 80  # more than was read: read again
        assert ledger.reads == 2
        assert await feed.recent_blocks(model, 1000) == await model.blocks_json(1000)
    finally:
        await ledger.close()
