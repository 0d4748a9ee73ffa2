"""The pool's accountant: job terms recorded, crediting in a child process that survives a kill.

`pool.accountant.Accountant` as `hashfarm pool` runs it with `[accounting] enabled`: its
`JobTermsRecorder` records the jobs, and the crediting service runs in a spawned process
that reaches "the node" through the real RPC client over HTTP (a JSON-RPC server on
127.0.0.1 answering from a scripted chain). The process is killed (`SIGKILL`) mid-life: the
accountant starts another, which carries on from the books, pricing each share once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from hashfarm.accounting.store import SqlStore, connect
from hashfarm.pool import accountant as accountant_module
from hashfarm.pool.accountant import Accountant, NodeLogin
from hashfarm.pool.settings import AccountingSettings, PoolSettings, StorageSettings
from hashfarm.pool.storage.sqlite import SQLiteLedger
from rpc_server import json_rpc_server
from unit.accounting.acct_jobs import PoolWithJobs, make_template
from unit.accounting.acct_pool import ScriptedChain, block_hash

D256 = 0x1C00FFFF  # network difficulty 256
HEIGHT, SUBSIDY = 840_000, 312_500_000  # mainnet: 3.125 BTC


class ChainServer:
    """Answers getblockcount / getblockhash / getblockheader from a `ScriptedChain`."""

    def __init__(self, chain: ScriptedChain) -> None:
        self.chain = chain

    async def handle(self, request: web.Request) -> web.Response:
        doc = orjson.loads(await request.read())
        method, params = doc["method"], doc["params"]
        result: Any = None
        error = None
        if method == "getblockcount":
            result = self.chain.tip
        elif method == "getblockhash":
            if 0 <= params[0] <= self.chain.tip:
                result = self.chain.hashes[params[0]]
            else:
                error = {"code": -8, "message": "Block height out of range"}
        elif method == "getblockheader":
            result = await self.chain.getblockheader(params[0])
        else:
            error = {"code": -32601, "message": "Method not found"}
        body = {"result": result, "error": error, "id": doc["id"]}
        return web.Response(
            body=orjson.dumps(body), status=500 if error else 200, content_type="application/json"
        )


@pytest.fixture
async def node() -> AsyncIterator[tuple[ScriptedChain, str]]:
    chain = ScriptedChain()
    async with json_rpc_server(ChainServer(chain).handle) as url:
        yield chain, url


def _priced(sql: SqlStore) -> int:
    return int(sql.q("SELECT coalesce(sum(shares), 0) FROM acct_pps_batches")[0][0])


async def _until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_crediting_runs_in_a_child_process_and_comes_back_after_a_kill(
    node: tuple[ScriptedChain, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, url = node
    monkeypatch.setattr(accountant_module, "RESTART_FIRST", 0.1)
    path = tmp_path / "pool.sqlite3"
    ledger = SQLiteLedger(path)
    await ledger.start()
    settings = replace(
        PoolSettings(),
        mode="pooled",
        network="mainnet",
        storage=StorageSettings(url=f"sqlite:///{path}"),
        accounting=AccountingSettings(enabled=True, scheme="pps", fee_bps=100),
    )
    acct = Accountant(settings, NodeLogin(url, "u", "p", None, 5.0), poll_interval=0.1)
    await acct.start()
    pool = PoolWithJobs(ledger, acct.recorder)
    acct.recorder.clock = pool.clock  # the pool's clock, as in the pool process
    sql = connect(f"sqlite:///{path}")
    try:
        await pool.publish(make_template(HEIGHT, D256, SUBSIDY, 0))
        for _ in range(3):
            await pool.share("alice", 1.0)
        rec = await pool.block("bob", block_hash(1), chain.tip + 1)
        chain.place(rec.hash_hex)
        await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 0))
        await _until(lambda: _priced(sql) == 4, 30, "the child process to price 4 shares")
        # 1 / 256 x 312,500,000 x 0.99 = 1,208,496.09375 per share
        assert sql.balances("miner:") == {"miner:alice": 3_625_488, "miner:bob": 1_208_496}
        await _until(
            lambda: sql.q("SELECT state FROM acct_blocks") == [("immature",)], 10, "posted"
        )
        first = acct._proc
        assert first is not None
        first.kill()  # SIGKILL: as a crash would
        await _until(lambda: acct.restarts == 1, 30, "a new crediting process")
        assert acct._proc is not first
        await pool.share("alice", 1.0)
        await pool.publish(make_template(HEIGHT + 1, D256, SUBSIDY, 0))
        chain.extend(100)
        await _until(lambda: _priced(sql) == 5, 30, "the new process to price the 5th share")
        await _until(
            lambda: sql.q("SELECT state FROM acct_blocks") == [("credited",)], 10, "credited"
        )
        # alice 4 x 1,208,496.09375 = 4,833,984.375 -> 4,833,984; every share priced once
        assert sql.balances("miner:") == {"miner:alice": 4_833_984, "miner:bob": 1_208_496}
        assert sql.balance("pool:reserve") == SUBSIDY - 4_833_984 - 1_208_496
    finally:
        proc = acct._proc
        await acct.close()
        sql.close()
        await ledger.close()
    assert proc is not None
    assert not proc.is_alive()  # asked to stop, it ended its pass and exited
    assert proc.exitcode == 0
