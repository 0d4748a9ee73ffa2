"""Pooled mode pays with one command: `[accounting]` PPS and TIDES on the regtest node.

`hashfarm pool`'s own wiring (`cli.pool.running_pool`) with `[accounting] enabled`: the pool
records every job's terms (and a TIDES job's coinbase plan), and the crediting service runs in
the pool process, following the real bcoin node. Three miners mine through it.

* PPS: every accepted share is credited `d / D x subsidy x (1 - fee)` at its own job's
  terms, recomputed here from the shares and the regtest rules alone (D from the regtest
  bits, the subsidy halving every 150 blocks); the pool's blocks fill the reserve, and once
  100 blocks mature them the reserve is their rewards minus the PPS credits. The standalone
  `hashfarm accounts credit --scheme pps --once` then finds nothing left to do.
* TIDES: every block the pool found is posted from its job's coinbase plan, and what the
  books say the coinbase paid (`payouts:coinbase`) is what the node's copy of that block's
  coinbase pays the miners' addresses, satoshi for satoshi.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from hashfarm.accounting.statements import block_lines
from hashfarm.accounting.store import SqlStore, connect
from hashfarm.chain.address import address_to_script
from hashfarm.chain.block import Block
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.cli.pool import running_pool
from hashfarm.node.rpc import RPCClient
from hashfarm.pool import accountant
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import AccountingSettings, VardiffSettings
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, accepted_blocks, pool_settings, wait_for
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node

REGTEST_BITS = 0x207FFFFF
HALVING = 150  # regtest's subsidy halving interval


# This module's own node (conftest's module_node): its figures depend on the block reward,
# which halves every 150 blocks on regtest, and the session node is as tall as the tests
# before this one made it.
@pytest.fixture(scope="module")
def regtest_node(module_node: RegtestNode) -> RegtestNode:
    return module_node


@pytest.fixture(scope="module")
def rpc(module_rpc: RPCClient) -> RPCClient:
    return module_rpc


def subsidy(height: int) -> int:
    """Regtest's block subsidy (Core's GetBlockSubsidy with 150-block halvings)."""
    halvings = height // HALVING
    return 0 if halvings >= 64 else (50 * 100_000_000) >> halvings


def hashfarm(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it (a fresh process)."""
    code = "from hashfarm.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def _pps_state(sql: SqlStore) -> tuple[int, int]:
    """(accepted shares, shares priced)."""
    accepted = int(sql.q("SELECT count(*) FROM shares WHERE accepted")[0][0])
    priced = int(sql.q("SELECT coalesce(sum(shares), 0) FROM acct_pps_batches")[0][0])
    return accepted, priced


def _settled(sql: SqlStore, state: str) -> bool:
    """Every accepted share priced and every block the node took in `state` (at least 2)."""
    accepted, priced = _pps_state(sql)
    blocks = int(sql.q("SELECT count(*) FROM blocks WHERE accepted_by_node")[0][0])
    done = int(sql.q("SELECT count(*) FROM acct_blocks WHERE state = ?", (state,))[0][0])
    return priced == accepted and done == blocks >= 2


def _rewards(sql: SqlStore) -> int:
    return int(sql.q("SELECT sum(reward_sats) FROM blocks WHERE accepted_by_node")[0][0])


async def _mine(port: int, names: list[str], blocks: int, pool: Pool) -> None:
    miners = [StratumTestMiner(port, f"{name}.rig") for name in names]
    for miner in miners:
        await miner.start()
    while len(accepted_blocks(pool)) < blocks:
        for miner in miners:
            await miner.mine_share()
    for miner in miners:
        await miner.close()


async def test_pps_pays_every_share_at_its_jobs_terms_in_the_pool_process(
    regtest_node: RegtestNode, rpc: RPCClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accountant, "POLL_INTERVAL", 0.2)
    settings = pool_settings(
        regtest_node.rpc_url,
        regtest_node.api_key,
        tmp_path,
        mode="pooled",
        payout_address=bcoin_address(MINER_SCRIPTS[7]),
        vardiff=VardiffSettings(initial=1e-11, minimum=1e-12, enabled=False),
        accounting=AccountingSettings(enabled=True, scheme="pps", fee_bps=100),
    )
    settings = replace(settings, http=replace(settings.http, port=0))
    url = settings.storage.url
    async with running_pool(settings) as running:
        await _mine(running.pool.stratum_port, ["alice", "bob", "carol"], 2, running.pool)
        await regtest_node.mine(1)  # a new tip: a job after every share (their terms are in)
        sql = connect(url)
        try:
            await wait_for(
                lambda: _settled(sql, "immature"),
                30,
                "every share priced and every block posted by the pool's own crediting",
            )
            rows = sql.q("SELECT account, difficulty, height FROM shares WHERE accepted")
            # each share by hand: d / D x subsidy(height) x (1 - 1%), D of the regtest bits
            network = Fraction(bits_to_difficulty(REGTEST_BITS))
            owed: dict[str, Fraction] = {}
            for account, d, height in rows:
                value = Fraction(float(d)) / network * subsidy(int(height)) * Fraction(99, 100)
                owed[str(account)] = owed.get(str(account), Fraction(0)) + value
            credits = {a: math.floor(v) for a, v in owed.items()}
            assert set(credits) == {"alice", "bob", "carol"}
            assert sql.balances("miner:") == {f"miner:{a}": v for a, v in credits.items()}
            rewards = _rewards(sql)  # every block the pool found (and the node took)
            assert sql.balance("pool:reserve:immature") == rewards
            assert sql.balance("pool:reserve") == -sum(credits.values())
            await regtest_node.mine(100)  # the pool's blocks mature: rewards into the reserve
            await wait_for(
                lambda: _settled(sql, "credited"), 30, "the blocks credited at 100 confirmations"
            )
            paid = sum(sql.balances("miner:").values())
            assert sql.balance("pool:reserve") == rewards - paid  # blocks' rewards - PPS credits
            assert sql.balance("pool:reserve:immature") == 0
            assert sum(sql.balances().values()) == 0
        finally:
            sql.close()
    password = tmp_path / "rpc-password"
    password.write_text(regtest_node.api_key)
    again = await asyncio.to_thread(
        hashfarm, "accounts", "credit", "--storage-url", url, "--rpc-url", regtest_node.rpc_url,
        "--rpc-password-file", str(password), "--scheme", "pps", "--fee-bps", "100", "--once",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "posted 0, credited 0, orphaned 0" in again.stdout, again.stdout
    assert "PPS shares priced 0" in again.stdout, again.stdout


async def test_tides_blocks_are_posted_as_their_coinbase_paid(
    regtest_node: RegtestNode, rpc: RPCClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accountant, "POLL_INTERVAL", 0.2)
    names = [str(bcoin_address(MINER_SCRIPTS[i])) for i in range(3)]  # TIDES: names are addresses
    settings = pool_settings(
        regtest_node.rpc_url,
        regtest_node.api_key,
        tmp_path,
        mode="pooled",
        payout_address=bcoin_address(MINER_SCRIPTS[7]),
        vardiff=VardiffSettings(initial=1e-11, minimum=1e-12, enabled=False),
        accounting=AccountingSettings(enabled=True, scheme="tides", fee_bps=100, dust_sats=1),
    )
    settings = replace(settings, http=replace(settings.http, port=0))
    url = settings.storage.url
    async with running_pool(settings) as running:
        await _mine(running.pool.stratum_port, names, 2, running.pool)
        # plans are made off the new-tip path: a new tip once the window holds work, time
        # for its plans, then blocks found on jobs whose coinbase pays the window
        await regtest_node.mine(1)
        await asyncio.sleep(1.0)
        await _mine(running.pool.stratum_port, names, 4, running.pool)
        sql = connect(url)
        try:
            await wait_for(
                lambda: (
                    int(sql.q("SELECT count(*) FROM acct_blocks WHERE state = 'immature'")[0][0])
                    == int(sql.q("SELECT count(*) FROM blocks WHERE accepted_by_node")[0][0])
                ),
                30,
                "every block posted by the pool's own crediting",
            )
            found = sql.q("SELECT hash, reward_sats FROM blocks WHERE accepted_by_node")
            scripts = {address_to_script(n, "regtest"): n for n in names}
            plans = 0
            for block_hash, reward in found:
                coinbase = Block.parse(await rpc.getrawblock(block_hash)).transactions[0]
                to_miners = sum(o.value for o in coinbase.outputs if o.script_pubkey in scripts)
                legs = sql.q(
                    "SELECT account, amount FROM acct_postings WHERE txn_key = ?",
                    (f"found:{block_hash}",),
                )
                booked = sum(int(v) for a, v in legs if a == "payouts:coinbase")
                assert booked == to_miners, block_hash
                total = sum(int(v) for a, v in legs if int(v) > 0)
                assert total == int(reward)  # fee + outputs + held: the block's value
                plans += booked > 0
            assert plans >= 1  # the window had work, so a coinbase paid miners
            explained = [ln for n in names for ln in block_lines(sql, n) if ln.sats]
            assert explained  # each miner's part, from the window the plan recorded
            assert all("of the window of block" in ln.explanation for ln in explained)
            assert all(ln.explanation.endswith("(tides)") for ln in explained)
            assert sum(sql.balances().values()) == 0
            assert all(v >= 0 for v in sql.balances("miner:").values())
        finally:
            sql.close()
