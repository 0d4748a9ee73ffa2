"""The crediting service over a database the pool's real SQLiteLedger wrote.

The chain is scripted (`ScriptedChain`) so reorgs can be placed exactly; the end-to-end test
on the regtest node is tests/integration/test_accounting_regtest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import pytest

from hashfarm.accounting import FoundBlock, Share, credit_block
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Pplns, Prop, Solo
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.statements import account_list, block_lines, day_lines
from hashfarm.accounting.store import AccountingStore, open_store
from hashfarm.pool.storage.sqlite import SQLiteLedger
from unit.accounting.acct_pool import PoolHistory, ScriptedChain, block_hash

REWARD = 5_000_000_011  # odd, so the split has remainders


@pytest.fixture
async def pool_db(tmp_path: Path) -> AsyncIterator[tuple[PoolHistory, str]]:
    ledger = SQLiteLedger(tmp_path / "pool.sqlite3")
    await ledger.start()
    try:
        yield PoolHistory(ledger), f"sqlite:///{tmp_path / 'pool.sqlite3'}"
    finally:
        await ledger.close()


@pytest.fixture
async def store(pool_db: tuple[PoolHistory, str]) -> AsyncIterator[AccountingStore]:
    s = await open_store(pool_db[1])
    try:
        yield s
    finally:
        await s.close()


def miner_balances(store: AccountingStore) -> dict[str, int]:
    return store.sql.balances("miner:")


async def test_pplns_credits_reward_less_fee_exactly_then_matures(
    pool_db: tuple[PoolHistory, str], store: AccountingStore
) -> None:
    pool, _ = pool_db
    chain = ScriptedChain()
    stream = [("alice", 0.75), ("bob", 0.5), ("carol", 1.25), ("alice", 0.3), ("bob", 0.2)]
    for account, d in stream:
        await pool.share(account, d)
    await pool.share("carol", 9.0, accepted=False)  # rejected: never counts
    rec = await pool.block("alice", 0.25, block_hash(1), chain.tip + 1, REWARD)
    chain.place(rec.hash_hex)
    scheme = Pplns(Fee.bps(150), Fraction(2))
    service = CreditingService(store, chain, scheme)
    report = await service.step()
    assert (report.tracked, report.posted, report.credited) == (1, 1, 0)
    # the reference: the pure credit over the same accepted shares (window 2 x D = 2.0)
    shares = [Share(i + 1, a, d, 0.0, 0) for i, (a, d) in enumerate(stream)]
    shares.append(Share(7, "alice", 0.25, 0.0, 0))  # id 6 is the rejected share
    expected = credit_block(
        scheme, FoundBlock(rec.hash_hex, rec.height, REWARD, "alice", 7, rec.time, 1.0), shares
    )
    assert sum(expected.credits.values()) == REWARD - Fee.bps(150).of(REWARD)
    assert "carol" in expected.credits  # the window reaches back to carol's 1.25 share
    immature = {f"miner:{a}:immature": v for a, v in expected.credits.items()}
    assert miner_balances(store) == immature
    chain.extend(98)  # 99 confirmations: not yet
    assert (await service.step()).credited == 0
    chain.extend(1)
    assert (await service.step()).credited == 1
    assert miner_balances(store) == {f"miner:{a}": v for a, v in expected.credits.items()}
    assert store.sql.balance("pool:fees") == Fee.bps(150).of(REWARD)
    lines = await store.call(lambda s: block_lines(s, "bob"))
    assert [(ln.height, ln.state, ln.sats) for ln in lines] == [
        (rec.height, "credited", expected.credits["bob"])
    ]
    part = expected.window.explain("bob")
    assert lines[0].part == part
    assert (
        lines[0].explanation
        == f"{float(part * 100):.4g}% of the window of block {rec.height:,} (pplns)"
    )
    days = await store.call(lambda s: day_lines(s, "bob"))
    assert sum(d.earned for d in days) == sum(d.matured for d in days) == expected.credits["bob"]
    summaries = await store.call(account_list)
    assert {s.account: s.spendable for s in summaries} == expected.credits
    again = await CreditingService(store, chain, scheme).step()  # a restart: nothing new
    assert (again.tracked, again.posted, again.credited, again.orphaned) == (0, 0, 0, 0)


async def test_orphaned_block_is_reversed_and_never_credited(
    pool_db: tuple[PoolHistory, str], store: AccountingStore
) -> None:
    pool, _ = pool_db
    chain = ScriptedChain()
    await pool.share("bob", 1.0)
    kept = await pool.block("alice", 1.0, block_hash(1), chain.tip + 1, REWARD)
    chain.place(kept.hash_hex)
    lost = await pool.block("bob", 1.0, block_hash(2), chain.tip + 1, REWARD)
    chain.place(lost.hash_hex)
    service = CreditingService(store, chain, Prop(Fee.bps(100)))
    assert (await service.step()).posted == 2
    chain.reorg(lost.height, longer_by=2)  # a longer branch replaces the second block
    report = await service.step()
    assert (report.orphaned, report.reversed) == (1, 1)
    chain.extend(150)
    report = await service.step()
    assert report.credited == 1
    balances = miner_balances(store)
    assert sum(balances.values()) == REWARD - Fee.bps(100).of(REWARD)  # the kept block only
    assert not any(k.endswith(":immature") for k in balances)
    rows = store.sql.q("SELECT state FROM acct_blocks WHERE hash = ?", (lost.hash_hex,))
    assert rows == [("orphaned",)]
    assert not store.sql.has_transaction(f"mature:{lost.hash_hex}")
    lines = await store.call(lambda s: block_lines(s, "bob"))
    assert [ln.state for ln in lines] == ["orphaned", "credited"]  # newest block first


async def test_block_replaced_before_it_was_seen_posts_nothing(
    pool_db: tuple[PoolHistory, str], store: AccountingStore
) -> None:
    pool, _ = pool_db
    chain = ScriptedChain()
    lost = await pool.block("alice", 1.0, block_hash(1), chain.tip + 1, REWARD)
    chain.extend(3)  # another block took its height before the service ever looked
    report = await CreditingService(store, chain, Solo()).step()
    assert (report.tracked, report.orphaned, report.reversed) == (1, 1, 0)
    assert not store.sql.has_transaction(f"found:{lost.hash_hex}")


async def test_block_waits_for_its_finding_share(
    pool_db: tuple[PoolHistory, str], store: AccountingStore
) -> None:
    pool, _ = pool_db
    chain = ScriptedChain()
    from hashfarm.pool.records import BlockRecord

    await pool.ledger.record_block(
        BlockRecord(chain.tip + 1, block_hash(9), REWARD, "x.rig", "x", 1.0, True, None)
    )
    chain.place(block_hash(9))
    report = await CreditingService(store, chain, Solo()).step()
    assert report.waiting == [block_hash(9)]
    assert report.tracked == 0


async def test_switch_takes_effect_at_the_next_block_and_windows_stop_there(
    pool_db: tuple[PoolHistory, str], store: AccountingStore
) -> None:
    pool, _ = pool_db
    chain = ScriptedChain()
    now = [pool.time]
    prop = CreditingService(store, chain, Prop(), clock=lambda: now[0])
    await pool.share("carol", 4.0)
    first = await pool.block("alice", 1.0, block_hash(1), chain.tip + 1, REWARD)
    chain.place(first.hash_hex)
    await prop.step()
    now[0] = first.time + 0.1  # the operator switches to PPLNS now
    pplns = CreditingService(store, chain, Pplns(factor=Fraction(100)), clock=lambda: now[0])
    await pool.share("dave", 1.0)
    boundary = await pool.block("bob", 1.0, block_hash(2), chain.tip + 1, REWARD)
    chain.place(boundary.hash_hex)
    await pool.share("erin", 1.0)
    after = await pool.block("bob", 1.0, block_hash(3), chain.tip + 1, REWARD)
    chain.place(after.hash_hex)
    await pplns.step()
    specs = dict(store.sql.q("SELECT hash, scheme FROM acct_blocks"))
    assert specs[first.hash_hex].startswith("prop:")
    assert specs[boundary.hash_hex].startswith("prop:")  # the boundary block: still PROP
    assert specs[after.hash_hex].startswith("pplns:")
    # PROP round of the boundary block: dave and bob since the first block (not carol)
    parts = dict(
        store.sql.q(
            "SELECT account, sats FROM acct_block_parts WHERE block_hash = ?", (boundary.hash_hex,)
        )
    )
    assert set(parts) == {"dave", "bob"}
    # the PPLNS window (100 x D, far from full) stops at the boundary: erin and bob only
    parts = dict(
        store.sql.q(
            "SELECT account, sats FROM acct_block_parts WHERE block_hash = ?", (after.hash_hex,)
        )
    )
    assert parts == {"bob": REWARD // 2 + 1, "erin": REWARD // 2}  # tie: ascending id


@pytest.mark.services
async def test_on_postgresql_the_pool_rows_are_credited_and_orphans_reversed(
    fresh_pg_url: str,
) -> None:
    from hashfarm.pool.storage.postgres import PostgresLedger

    url = fresh_pg_url
    ledger = PostgresLedger(url)
    await ledger.start()
    store: AccountingStore | None = None
    try:
        pool = PoolHistory(ledger)
        chain = ScriptedChain()
        for account, d in (("alice", 0.5), ("bob", 1.5), ("carol", 0.125)):
            await pool.share(account, d)
        kept = await pool.block("bob", 0.5, block_hash(1), chain.tip + 1, REWARD)
        chain.place(kept.hash_hex)
        lost = await pool.block("carol", 0.5, block_hash(2), chain.tip + 1, REWARD)
        chain.place(lost.hash_hex)
        store = await open_store(url)
        service = CreditingService(store, chain, Pplns(Fee.bps(200)))
        assert (await service.step(budget=2)).complete is False  # a crash after two events
        assert (await service.step()).posted == 2
        chain.reorg(lost.height)
        chain.extend(100)
        report = await CreditingService(store, chain, Pplns(Fee.bps(200))).step()
        assert (report.orphaned, report.reversed, report.credited) == (1, 1, 1)
        balances = miner_balances(store)
        assert sum(balances.values()) == REWARD - Fee.bps(200).of(REWARD)
        assert set(balances) == {"miner:bob", "miner:carol"}  # 0.5 + 0.125 + 1.375 of 1.5: full
        lines = await store.call(lambda s: block_lines(s, "carol"))
        assert [ln.state for ln in lines] == ["orphaned", "credited"]
    finally:
        if store is not None:
            await store.close()
        await ledger.close()


async def test_window_read_in_chunks_equals_the_reference(
    pool_db: tuple[PoolHistory, str], store: AccountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hashfarm.accounting import crediting

    monkeypatch.setattr(crediting, "_CHUNK", 3)  # the window spans many reads
    pool, _ = pool_db
    chain = ScriptedChain(bits=0x1D00FFFF)
    accounts = ["alice", "bob", "carol", "dave"]
    stream = [(accounts[i % 4], [0.1, 0.7, 0.25, 1.5, 0.3][i % 5]) for i in range(23)]
    for n, (account, d) in enumerate(stream):
        await pool.share(account, d, accepted=n % 7 != 3)  # a few rejected in between
    rec = await pool.block("erin", 0.2, block_hash(1), chain.tip + 1, REWARD)
    chain.place(rec.hash_hex)
    scheme = Pplns(Fee.bps(30), Fraction(5))
    await CreditingService(store, chain, scheme).step()
    rows = store.sql.q("SELECT id, account, difficulty FROM shares WHERE accepted ORDER BY id")
    shares = [Share(int(i), str(a), float(d), 0.0, 0) for i, a, d in rows]
    expected = credit_block(
        scheme,
        FoundBlock(rec.hash_hex, rec.height, REWARD, "erin", shares[-1].share_id, rec.time, 1.0),
        shares,
    )
    assert expected.window.oldest_share_id != shares[0].share_id  # the edge is inside
    parts = dict(store.sql.q("SELECT account, sats FROM acct_block_parts"))
    assert parts == expected.credits
    window = store.sql.q("SELECT window_total, oldest_share_id FROM acct_block_windows")
    assert window == [(str(expected.window.total), expected.window.oldest_share_id)]


async def test_a_block_the_books_refuse_is_reported_and_the_others_go_on(
    pool_db: tuple[PoolHistory, str], store: AccountingStore
) -> None:
    pool, _ = pool_db
    chain = ScriptedChain()
    await pool.share("bob", 1.0)
    await pool.share("bob", 0.001)  # rewritten below as a difficulty no pool writes
    store.sql.q("UPDATE shares SET difficulty = 0 WHERE difficulty = 0.001")
    bad = await pool.block("alice", 1.0, block_hash(1), chain.tip + 1, REWARD)
    chain.place(bad.hash_hex)
    good = await pool.block("carol", 1.0, block_hash(2), chain.tip + 1, REWARD)
    chain.place(good.hash_hex)
    report = await CreditingService(store, chain, Prop()).step()
    assert report.failed == [bad.hash_hex]
    assert report.posted == 1
    assert miner_balances(store) == {"miner:carol:immature": REWARD}


async def test_reading_a_window_does_not_hold_the_pools_writes(
    pool_db: tuple[PoolHistory, str], store: AccountingStore
) -> None:
    """While the window is read, another connection (the pool) can still commit at once."""
    import sqlite3

    from hashfarm.accounting.store import SqlStore

    pool, url = pool_db
    chain = ScriptedChain()
    await pool.share("alice", 1.0)
    rec = await pool.block("bob", 1.0, block_hash(1), chain.tip + 1, REWARD)
    chain.place(rec.hash_hex)
    path = url.removeprefix("sqlite:///")
    writes: list[str] = []

    class PoolWritesMeanwhile(SqlStore):
        def q(self, text: str, params: object = ()) -> list[tuple[object, ...]]:
            if text.startswith("SELECT id, account, difficulty FROM shares"):
                other = sqlite3.connect(path, timeout=0, isolation_level=None)
                try:
                    other.execute("UPDATE shares SET worker = worker WHERE id = 1")
                    writes.append("ok")
                except sqlite3.OperationalError as exc:
                    writes.append(str(exc))
                finally:
                    other.close()
            return super().q(text, params)  # type: ignore[arg-type]

    healthy = store.sql
    store.sql = PoolWritesMeanwhile(healthy.conn, healthy.dialect, healthy.where)
    try:
        assert (await CreditingService(store, chain, Pplns()).step()).posted == 1
    finally:
        store.sql = healthy
    assert writes
    assert set(writes) == {"ok"}


async def test_a_tip_that_moves_while_read_is_read_again_and_an_away_node_ends_the_pass(
    pool_db: tuple[PoolHistory, str], store: AccountingStore
) -> None:
    from hashfarm.errors import NodeUnavailable

    pool, _ = pool_db
    rec = await pool.block("alice", 1.0, block_hash(1), ScriptedChain().tip + 1, REWARD)

    class Reorging(ScriptedChain):
        """The pool's block is replaced while the service reads the heights."""

        reads = 0

        async def getblockhash(self, height: int) -> str:
            self.reads += 1
            if self.reads == 2:  # after the first tip read: a longer branch arrives
                self.reorg(rec.height, longer_by=1)
            return await super().getblockhash(height)

    chain = Reorging()
    chain.place(rec.hash_hex)
    report = await CreditingService(store, chain, Solo()).step()
    assert chain.reads > 4, report  # the view was read again
    assert (report.posted, report.orphaned) == (0, 1)  # decided on the new chain only

    class Away(ScriptedChain):
        async def getblockcount(self) -> int:
            raise NodeUnavailable("node away")

    with pytest.raises(NodeUnavailable):
        await CreditingService(store, Away(), Solo()).step()


async def test_run_survives_an_outage_and_credits_when_the_node_is_back(
    pool_db: tuple[PoolHistory, str], store: AccountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from hashfarm.errors import NodeUnavailable

    pool, _ = pool_db

    class Flaky(ScriptedChain):
        away = True

        async def getblockcount(self) -> int:
            if self.away:
                raise NodeUnavailable("node away")
            return await super().getblockcount()

    chain = Flaky()
    rec = await pool.block("alice", 1.0, block_hash(1), chain.tip + 1, REWARD)
    chain.place(rec.hash_hex)
    stop = asyncio.Event()
    task = asyncio.create_task(CreditingService(store, chain, Solo(), poll_interval=0.05).run(stop))
    await asyncio.sleep(0.3)
    assert "accounting pass failed" in caplog.text
    chain.away = False
    for _ in range(100):  # through the store's thread: the service uses the connection
        if await store.call(lambda s: s.balances("miner:")):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert miner_balances(store) == {"miner:alice:immature": REWARD}
