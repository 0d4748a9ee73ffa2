"""The accounting routes of the HTTP API, over a real socket on 127.0.0.1 and a real ledger.

The ledger is built as in production: the pool's own `SQLiteLedger` (or `PostgresLedger`)
writes shares and found blocks, the crediting service credits them against a scripted chain
(a PROP round: alice 2/3, bob 1/3 of block 100; block 101 orphaned), and one custodial payout
is written to the ledger and the payout tables as the payout service records one. Every
figure the API serves is compared with `hashfarm accounts ... --json` on the same database.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner

from hashfarm.accounting import statements
from hashfarm.accounting.ledger import PAYOUTS, immature_account, miner_account, transaction
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Prop
from hashfarm.accounting.service import CreditingService
from hashfarm.accounting.store import SqlStore, connect, open_store
from hashfarm.api.accounts import QUEUE_MAX, AccountsSource, Busy
from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.api.server import ApiServer
from hashfarm.cli.main import cli
from hashfarm.cli.pool import running_pool
from hashfarm.errors import LedgerError
from hashfarm.node.bcoin import free_port
from hashfarm.pool.bans import BanList
from hashfarm.pool.settings import (
    BanSettings,
    HttpSettings,
    NodeSettings,
    PoolSettings,
    StorageSettings,
    StratumSettings,
)
from hashfarm.pool.stats import PoolStats
from hashfarm.pool.storage.base import GroupCommitLedger
from hashfarm.pool.storage.sqlite import SQLiteLedger
from nodes import RegtestNode
from unit.accounting.acct_pool import PoolHistory, ScriptedChain, block_hash

REWARD = 1_000_000_001
FEE = Fee.bps(100)
NET = REWARD - FEE.of(REWARD)
ALICE = NET * 2 // 3 + 1  # the odd satoshi goes to the larger remainder
PAID = 123_456_789  # what the payout takes from alice's balance
PAYOUT_FEE = 1_000  # of it, the payout fee (to pool:fees); the rest is her output
NETWORK_FEE = 700  # what the pool's wallet paid the network for the transaction
TXID = "ab" * 32


class _Pool:
    """The pool side the read model needs (the accounting routes never touch it)."""

    bans = BanList(BanSettings())

    def sessions(self) -> list[object]:
        return []

    def current_job(self) -> None:
        return None


async def _books(ledger: GroupCommitLedger, url: str) -> None:
    """Shares and blocks through the pool's ledger, credited by the service, one payout."""
    await ledger.start()
    pool = PoolHistory(ledger)
    chain = ScriptedChain()
    await pool.share("alice", 2.0)
    kept = await pool.block("bob", 1.0, block_hash(1), chain.tip + 1, REWARD)
    chain.place(kept.hash_hex)
    lost = await pool.block("alice", 1.0, block_hash(2), chain.tip + 1, REWARD)
    chain.place(lost.hash_hex)
    await ledger.close()
    store = await open_store(url)
    try:
        service = CreditingService(store, chain, Prop(FEE))
        await service.step()
        chain.reorg(lost.height)
        chain.extend(100)
        await service.step()
        await store.call(_pay_alice)
    finally:
        await store.close()


def _pay_alice(sql: SqlStore) -> None:
    """A confirmed payout as the payout service records it (accounting/payouts.py): planned,
    alice's balance -> payouts:pending (the payout fee to pool:fees); confirmed, pending ->
    payouts (the network fee from pool:fees); the run and its item in the payout tables."""
    with sql.tx():
        amount = PAID - PAYOUT_FEE
        sql.post(
            transaction(
                "payout:run-1",
                "payout",
                {miner_account("alice"): -PAID, "payouts:pending": amount, "pool:fees": PAYOUT_FEE},
                1.7e9,
            )
        )
        sql.post(
            transaction(
                "payout-confirmed:run-1",
                "payout-confirmed",
                {
                    "payouts:pending": -amount,
                    PAYOUTS: amount,
                    "pool:fees": -NETWORK_FEE,
                    "payouts:network-fee": NETWORK_FEE,
                },
                1.7e9 + 600,
            )
        )
        sql.q(
            "INSERT INTO acct_payouts (idempotency_key, created_at, state, total_sats, txid, "
            "confirmations) VALUES ('run-1', 1700000500.0, 'confirmed', ?, ?, 3)",
            (PAID, TXID),
        )
        (payout_id,) = sql.q("SELECT id FROM acct_payouts WHERE idempotency_key = 'run-1'")[0]
        sql.q(
            "INSERT INTO acct_payout_items (payout_id, account, sats) VALUES (?, 'alice', ?)",
            (payout_id, PAID),
        )
        columns = [c[0] for c in sql.conn.execute("SELECT * FROM acct_payout_items").description]
        if "amount_sats" in columns:  # the payout service's later columns, where present
            sql.q(
                "UPDATE acct_payout_items SET address = 'bcrt1qalice', amount_sats = ? "
                "WHERE payout_id = ?",
                (amount, payout_id),
            )


def _model(ledger: GroupCommitLedger) -> ReadModel:
    info = PoolInfo("regtest", "pooled", 3333, time.time())
    return ReadModel(info, _Pool(), PoolStats(), ledger)


class Api:
    """An ApiServer on 127.0.0.1:0 and a client session; `get` returns (status, JSON)."""

    def __init__(self, server: ApiServer, http: aiohttp.ClientSession) -> None:
        self.server, self.http = server, http

    async def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.server.port}{path}"
        async with self.http.get(url) as resp:
            assert resp.content_type == "application/json", await resp.text()
            return resp.status, orjson.loads(await resp.read())

    async def ok(self, path: str) -> Any:
        status, doc = await self.get(path)
        assert status == 200, doc
        return doc


async def _serve(ledger: GroupCommitLedger, url: str | None) -> AsyncIterator[Api]:
    server = ApiServer(_model(ledger), "127.0.0.1", 0, ledger_url=url)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(server, http)
    finally:
        await server.stop()


@pytest.fixture
async def sqlite_api(tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    path = tmp_path / "pool.sqlite3"
    url = f"sqlite:///{path}"
    await _books(SQLiteLedger(path), url)
    async for api in _serve(SQLiteLedger(path), url):
        yield api, url


def _cli(*args: str) -> Any:
    done = CliRunner().invoke(cli, ["accounts", *args, "--json"])
    assert done.exit_code == 0, done.output
    return orjson.loads(done.output)


async def _same_as_the_cli(api: Api, url: str) -> None:
    """Every figure the API serves equals the CLI's on the same database."""
    listed = _cli("list", "--storage-url", url)
    doc = await api.ok("/api/accounts")
    assert doc["total"] == 2
    assert [{k: a[k] for k in ("account", "spendable", "immature")} for a in doc["accounts"]] == (
        listed
    )
    assert [a["paid"] for a in doc["accounts"]] == [PAID, 0]
    assert listed[0] == {"account": "alice", "spendable": ALICE - PAID, "immature": 0}
    for account in ("alice", "bob"):
        by_block = _cli("statement", account, "--storage-url", url)
        by_day = _cli("statement", account, "--day", "--storage-url", url)
        shown = _cli("show", account, "--storage-url", url)
        doc = await api.ok(f"/api/accounts/{account}/statement?by=block")
        assert doc["lines"] == by_block
        assert doc["total"] == len(by_block)
        assert (await api.ok(f"/api/accounts/{account}/statement"))["lines"] == by_block
        assert (await api.ok(f"/api/accounts/{account}/statement?by=day"))["lines"] == by_day
        one = await api.ok(f"/api/accounts/{account}")
        assert (one["spendable"], one["immature"]) == (shown["spendable"], shown["immature"])
        assert [
            {k: ln[k] for k in ("height", "block", "sats", "state", "explanation")}
            for ln in one["credits"]["lines"]
        ] == shown["recent"]
    alice = await api.ok("/api/accounts/alice/statement")
    assert [(ln["height"], ln["state"], ln["sats"], ln["part"]) for ln in alice["lines"]] == [
        (101, "orphaned", NET, "1"),
        (100, "credited", ALICE, "2/3"),
    ]
    assert alice["lines"][1]["explanation"] == "66.67% of the round of block 100 (prop)"


async def test_the_api_serves_the_cli_figures_on_sqlite(sqlite_api: tuple[Api, str]) -> None:
    api, url = sqlite_api
    await _same_as_the_cli(api, url)
    await _blocks_payouts_scheme_and_pages(api)


async def _blocks_payouts_scheme_and_pages(api: Api) -> None:
    credits = await api.ok(f"/api/blocks/{block_hash(1)}/credits")
    assert (credits["height"], credits["state"], credits["posted"]) == (100, "credited", True)
    assert credits["reward"] == REWARD
    assert credits["fee"] == FEE.of(REWARD)
    assert credits["credited"] == NET == credits["reward"] - credits["fee"]
    assert [(c["account"], c["sats"], c["part"]) for c in credits["credits"]] == [
        ("alice", ALICE, "2/3"),
        ("bob", NET - ALICE, "1/3"),
    ]
    upper = await api.ok(f"/api/blocks/{block_hash(1).upper()}/credits?limit=1&offset=1")
    assert upper["total"] == 2
    assert [c["account"] for c in upper["credits"]] == ["bob"]
    orphan = await api.ok(f"/api/blocks/{block_hash(2)}/credits")
    assert orphan["state"] == "orphaned"  # its credits were reversed; the lines stay explained

    payouts = await api.ok("/api/payouts")
    assert payouts["total"] == 1
    run = payouts["payouts"][0]
    assert {k: run[k] for k in ("state", "total", "txid", "confirmations", "accounts")} == {
        "state": "confirmed",
        "total": PAID,
        "txid": TXID,
        "confirmations": 3,
        "accounts": 1,
    }
    alice = await api.ok("/api/accounts/alice?limit=1")
    assert alice["paid"] == PAID
    assert alice["credits"]["total"] == 2
    assert len(alice["credits"]["lines"]) == 1
    assert [(p["sats"], p["txid"], p["state"]) for p in alice["payouts"]] == [
        (PAID, TXID, "confirmed")
    ]

    acc = await api.ok("/api/accounting")
    assert acc["available"] is True
    assert acc["scheme"]["spec"] == "prop:fee=100/10000"
    assert (acc["scheme"]["name"], acc["scheme"]["fee"]) == ("prop", "100/10000")
    assert acc["pending_switch"] is None
    # the orphan's fee was reversed with it; the payout's fee in, the network's out
    assert acc["pool_fees"] == FEE.of(REWARD) + PAYOUT_FEE - NETWORK_FEE
    assert acc["reserve"] == {
        "applies": False,
        "reserve": 0,
        "immature_reserve": 0,
        "owed_to_miners": NET - PAID,
        "warning_below": 0,
        "warning": False,
    }

    page = await api.ok("/api/accounts?limit=1&offset=1")
    assert (page["total"], [a["account"] for a in page["accounts"]]) == (2, ["bob"])
    beyond = await api.ok("/api/accounts?offset=999999999")
    assert (beyond["total"], beyond["accounts"]) == (2, [])
    days = await api.ok("/api/accounts/alice/statement?by=day&limit=1&offset=5")
    assert days["lines"] == []


ODD_NAMES = ["a", "a0", "a.b", "b:c", "Zed", "zed", "é", "Ω", "immature", "😀x", "a b"]


def _odd_books(sql: SqlStore) -> None:
    """Balances under names that sort differently by bytes, case, locale or a ':'; the last
    one is paid out to zero."""
    with sql.tx():
        for i, name in enumerate(ODD_NAMES):
            spendable, immature = 1000 + i, (7 * i) % 3
            amounts = {"pool:equity": -(spendable + immature), miner_account(name): spendable}
            if immature:
                amounts[immature_account(name)] = immature
            sql.post(transaction(f"capital:{i}", "capital", amounts, 1.0))
        last = ODD_NAMES[-1]
        paid_all = 1000 + len(ODD_NAMES) - 1
        sql.post(
            transaction(
                "payout:x", "payout", {miner_account(last): -paid_all, PAYOUTS: paid_all}, 2.0
            )
        )


async def _odd_names_listed_like_the_cli(url: str) -> None:
    sql = connect(url, create=True)
    try:
        _odd_books(sql)
    finally:
        sql.close()
    async for api in _serve(SQLiteLedger(Path("/nonexistent")), url):
        doc = await api.ok("/api/accounts?limit=1000")
        pages = [
            a
            for offset in range(0, len(ODD_NAMES), 3)
            for a in (await api.ok(f"/api/accounts?limit=3&offset={offset}"))["accounts"]
        ]
    assert pages == doc["accounts"]
    assert doc["total"] == len(ODD_NAMES)
    assert [a["account"] for a in doc["accounts"]] == sorted(ODD_NAMES)  # code point order
    listed = _cli("list", "--storage-url", url)  # non-zero balances only
    assert [
        {k: a[k] for k in ("account", "spendable", "immature")}
        for a in doc["accounts"]
        if a["spendable"] or a["immature"]
    ] == listed
    gone = next(a for a in doc["accounts"] if a["account"] == ODD_NAMES[-1])
    assert (gone["spendable"], gone["paid"]) == (0, 1000 + len(ODD_NAMES) - 1)


async def test_odd_account_names_page_in_code_point_order_on_sqlite(tmp_path: Path) -> None:
    await _odd_names_listed_like_the_cli(f"sqlite:///{tmp_path / 'odd.sqlite3'}")


@pytest.mark.services
async def test_odd_account_names_page_in_code_point_order_on_postgresql(
    fresh_pg_url: str,
) -> None:
    await _odd_names_listed_like_the_cli(fresh_pg_url)


@pytest.mark.parametrize(
    "path",
    [
        "/api/accounts?limit=²",  # str.isdigit() says yes, int() says no
        "/api/accounts?limit=٣",
        "/api/accounts?limit=0",
        "/api/accounts?limit=1001",
        "/api/accounts?limit=-1",
        "/api/accounts?offset=99999999999",  # eleven digits
        "/api/accounts?offset=1e3",
        "/api/accounts?limit=1&limit=2",
        "/api/accounts?page=2",
        "/api/accounts/alice%0Aforged%20log%20line",
        "/api/accounts/alice%00",
        "/api/accounts/" + "a" * 257,
        "/api/accounts/alice/statement?by=week",
        "/api/accounts/alice/statement?by=block&by=day",
        "/api/accounts/alice/statement?limit=²",
        "/api/accounts/alice?offset=1",
        "/api/blocks/zz/credits",
        "/api/blocks/" + "g" * 64 + "/credits",
        "/api/blocks/" + "a" * 65 + "/credits",
        "/api/payouts?limit=%F0%9F%92%A9",
        "/api/accounting?x=1",
    ],
)
async def test_hostile_parameters_are_400(sqlite_api: tuple[Api, str], path: str) -> None:
    api, _ = sqlite_api
    status, doc = await api.get(path)
    assert status == 400, doc
    assert isinstance(doc["error"], str)
    assert doc["error"]


async def test_unknown_account_and_block_are_404(sqlite_api: tuple[Api, str]) -> None:
    api, _ = sqlite_api
    for path in (
        "/api/accounts/mallory",
        "/api/accounts/mallory/statement",
        "/api/accounts/mallory/statement?by=day",
        "/api/blocks/" + "0" * 64 + "/credits",
    ):
        status, doc = await api.get(path)
        assert status == 404, (path, doc)
        assert "mallory" in doc["error"] or "0" * 64 in doc["error"]


async def test_reads_run_off_the_loop_and_cannot_write(sqlite_api: tuple[Api, str]) -> None:
    _, url = sqlite_api
    source = AccountsSource(url)
    try:
        name = await source.read(lambda sql: threading.current_thread().name)
        assert name.startswith("api-accounts")
        assert name != threading.current_thread().name
        with pytest.raises(LedgerError, match="readonly"):
            await source.read(lambda sql: sql.q("DELETE FROM acct_balances"))
        assert (await source.read(lambda sql: statements.summary(sql, "bob"))).spendable == (
            NET - ALICE
        )  # the refused write changed nothing and the source still reads
    finally:
        await source.close()


async def test_reads_beyond_the_queue_bound_are_refused_not_queued(
    sqlite_api: tuple[Api, str],
) -> None:
    _, url = sqlite_api
    source = AccountsSource(url)
    gate = threading.Event()
    try:
        held = [
            asyncio.ensure_future(source.read(lambda sql: gate.wait(30))) for _ in range(QUEUE_MAX)
        ]
        await asyncio.sleep(0.05)  # each has queued its read
        with pytest.raises(Busy):
            await source.read(lambda sql: None)
        for task in held:  # their clients went away: unstarted reads are dropped, no work
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        later = asyncio.ensure_future(source.read(lambda sql: statements.summary(sql, "bob")))
        await asyncio.sleep(0.05)
        assert not later.done()  # accepted, behind the one read still running
        gate.set()
        assert (await later).spendable == NET - ALICE
    finally:
        gate.set()
        await source.close()


async def test_a_ledger_without_accounting_is_answered_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(path)
    await ledger.start()  # the pool's tables only: accounting never ran here
    await ledger.close()
    url = f"sqlite:///{path}"
    async for api in _serve(SQLiteLedger(path), url):
        acc = await api.ok("/api/accounting")
        assert acc["available"] is False
        assert "accounting has not run" in acc["reason"]
        listed = await api.ok("/api/accounts")
        assert (listed["available"], listed["total"], listed["accounts"]) == (False, 0, [])
        assert (await api.ok("/api/payouts"))["payouts"] == []
        status, doc = await api.get("/api/accounts/alice")
        assert status == 404
        assert "accounting has not run" in doc["error"]
        status, doc = await api.get("/api/accounts?limit=²")  # still checked first
        assert status == 400


async def test_the_api_never_creates_the_accounting_tables(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(path)
    await ledger.start()
    await ledger.close()
    async for api in _serve(SQLiteLedger(path), f"sqlite:///{path}"):
        await api.ok("/api/accounting")
        await api.ok("/api/accounts")
    conn = sqlite3.connect(path)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert "shares" in names
    assert not any(n.startswith("acct") or n.startswith("accounting") for n in names)


async def test_an_api_without_the_ledger_says_accounting_is_off(tmp_path: Path) -> None:
    path = tmp_path / "pool.sqlite3"
    async for api in _serve(SQLiteLedger(path), None):
        acc = await api.ok("/api/accounting")
        assert acc["available"] is False
        assert "without the pool's ledger" in acc["reason"]
        status, _ = await api.get("/api/blocks/" + "0" * 64 + "/credits")
        assert status == 404


@pytest.mark.services
async def test_the_api_serves_the_cli_figures_on_postgresql(fresh_pg_url: str) -> None:
    from hashfarm.pool.storage.postgres import PostgresLedger

    url = fresh_pg_url
    await _books(PostgresLedger(url), url)
    async for api in _serve(PostgresLedger(url), url):
        await _same_as_the_cli(api, url)
        await _blocks_payouts_scheme_and_pages(api)
        status, doc = await api.get("/api/accounts/alice%0A")
        assert status == 400, doc
        source = AccountsSource(url)
        try:
            with pytest.raises(LedgerError, match="read-only"):
                await source.read(lambda sql: sql.q("DELETE FROM acct_balances"))
        finally:
            await source.close()


@pytest.mark.node
async def test_the_pool_process_serves_accounting_once_it_runs_on_its_ledger(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    """`hashfarm pool`'s wiring: its API reads the pool's own ledger; before accounting ran
    there it says so, and it sees the books as soon as the crediting service creates them."""
    http_port = free_port()
    url = f"sqlite:///{tmp_path / 'pool.sqlite3'}"
    settings = PoolSettings(
        node=NodeSettings(rpc_url=regtest_node.rpc_url, rpc_password=regtest_node.api_key),
        stratum=StratumSettings(port=0),
        storage=StorageSettings(url=url),
        http=HttpSettings(port=http_port),
    )
    base = f"http://127.0.0.1:{http_port}"
    async with running_pool(settings), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/accounting") as resp:
            before = await resp.json()
        store = await open_store(url)  # what `hashfarm accounts credit` does first
        await store.close()
        async with http.get(f"{base}/api/accounting") as resp:
            after = await resp.json()
        async with http.get(f"{base}/api/accounts?limit=²") as resp:
            bad = resp.status
    assert before["available"] is False
    assert "accounting has not run" in before["reason"]
    assert after == {
        "available": True,
        "scheme": None,
        "pending_switch": None,
        "pool_fees": 0,
        "reserve": {
            "applies": False,
            "reserve": 0,
            "immature_reserve": 0,
            "owed_to_miners": 0,
            "warning_below": 0,
            "warning": False,
        },
    }
    assert bad == 400


@pytest.mark.services
async def test_a_lost_postgresql_connection_is_opened_again(fresh_pg_url: str) -> None:
    import psycopg

    sql = connect(fresh_pg_url)  # the accounting tables, empty
    sql.close()
    source = AccountsSource(fresh_pg_url)
    try:
        pid = await source.read(lambda sql: sql.q("SELECT pg_backend_pid()")[0][0])
        with psycopg.connect(fresh_pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(LedgerError):  # the read that finds the connection gone
            await source.read(lambda sql: sql.q("SELECT 1"))
        again = await source.read(lambda sql: sql.q("SELECT pg_backend_pid()")[0][0])
        assert again != pid
        assert (await source.read(lambda sql: statements.account_page(sql, 10, 0))) == (0, [])
    finally:
        await source.close()
