"""Accounting end to end on the regtest node: pooled mining, maturity, a reorg, the CLI.

Three miners mine through a real pooled-mode Pool into its real SQLite ledger; the crediting
service follows the real bcoin node. One of the pool's blocks is then invalidated
(`invalidateblock`) and a longer branch mined, 100 more blocks mature the rest, and the
`hashfarm accounts` commands credit and explain the books from the same database.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import orjson
import pytest

from hashfarm.accounting import FoundBlock, JobTerms, Share
from hashfarm.accounting.money import Fee
from hashfarm.accounting.schemes import Pplns
from hashfarm.accounting.service import CreditingService, header_difficulty
from hashfarm.accounting.statements import block_lines
from hashfarm.accounting.store import connect, open_store
from hashfarm.accounting.switching import settle_history
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.settings import VardiffSettings
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, accepted_blocks, pool_settings, running_pool, wait_for
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node

MINERS = ("alice", "bob", "carol")
FEE = Fee.bps(100)  # 1%
SCHEME = Pplns(FEE, Fraction(2))


# This module's own node (conftest's module_node): its figures depend on the block reward,
# which halves every 150 blocks on regtest, and the session node is as tall as the tests
# before this one made it.
@pytest.fixture(scope="module")
def regtest_node(module_node: RegtestNode) -> RegtestNode:
    return module_node


@pytest.fixture(scope="module")
def rpc(module_rpc: RPCClient) -> RPCClient:
    return module_rpc


def hashfarm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (a fresh process)."""
    code = "from hashfarm.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_pooled_blocks_are_credited_exactly_and_a_reorged_block_never(
    regtest_node: RegtestNode, rpc: RPCClient, tmp_path: Path
) -> None:
    settings = pool_settings(
        regtest_node.rpc_url,
        regtest_node.api_key,
        tmp_path,
        mode="pooled",
        payout_address=bcoin_address(MINER_SCRIPTS[7]),
        # shares ~1/47 of the network's difficulty: windows of 2 x D span ~90 shares and blocks
        vardiff=VardiffSettings(initial=1e-11, minimum=1e-12, enabled=False),
    )
    url = settings.storage.url
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        miners = [StratumTestMiner(pool.stratum_port, f"{name}.rig") for name in MINERS]
        for miner in miners:
            await miner.start()
        while len(accepted_blocks(pool)) < 3:
            for miner in miners:  # round robin: every block's window holds all three
                await miner.mine_share()
        for miner in miners:
            await miner.close()
        await wait_for(
            lambda: len([b for b in recorder.blocks if b.accepted_by_node]) >= 3,
            10,
            "the block records",
        )
    found = accepted_blocks(pool)
    store = await open_store(url)
    try:
        node = regtest_node.rpc()
        service = CreditingService(store, node, SCHEME)
        first = await service.step()
        assert (first.tracked, first.posted) == (len(found), len(found)), first
        # a reorg: the newest block of the pool is invalidated and a longer branch mined
        lost = max(found, key=lambda b: b.height)
        assert await rpc.getblockcount() == lost.height  # the pool's block is the tip
        await rpc.call("invalidateblock", lost.hash_hex)
        await regtest_node.mine(2)
        assert await rpc.getblockhash(lost.height) != lost.hash_hex
        second = await service.step()
        assert (second.orphaned, second.reversed) == (1, 1), second
        await node.close()
    finally:
        await store.close()
    await regtest_node.mine(100)  # every kept block of the pool now has 100+ confirmations

    password_file = tmp_path / "rpc-password"
    password_file.write_text(regtest_node.api_key)
    args = [
        "accounts",
        "credit",
        "--storage-url",
        url,
        "--rpc-url",
        regtest_node.rpc_url,
        "--rpc-password-file",
        str(password_file),
        "--scheme",
        "pplns",
        "--fee-bps",
        "100",
        "--once",
    ]
    done = await asyncio.to_thread(hashfarm, *args)
    assert done.returncode == 0, done.stderr
    assert f"credited {len(found) - 1}," in done.stdout
    replay = await asyncio.to_thread(hashfarm, *args)  # a second run credits nothing again
    assert "posted 0, credited 0, orphaned 0" in replay.stdout, replay.stdout + replay.stderr

    sql = connect(url)
    try:
        # the reference: the pure settlement of the same accepted shares and blocks
        rows = sql.q(
            "SELECT id, account, difficulty, time, height, block_hash FROM shares "
            "WHERE accepted ORDER BY id"
        )
        shares = [Share(int(i), str(a), float(d), float(t), int(h)) for i, a, d, t, h, _ in rows]
        finding = {str(bh): int(i) for i, _, _, _, _, bh in rows if bh is not None}
        difficulty = header_difficulty(await rpc.getblockheader(found[0].hash_hex))
        blocks = [
            FoundBlock(
                b.hash_hex,
                b.height,
                b.reward_sats,
                b.finder_account,
                finding[b.hash_hex],
                b.time,
                difficulty,
            )
            for b in found
        ]
        reference = {
            c.block_hash: c
            for c in settle_history(SCHEME, [], shares, blocks, lambda s: JobTerms(1.0, 0)).blocks
        }
        expected: dict[str, int] = {}
        paid_together: list[int] = []  # how many miners each block paid
        for block in found:
            state = sql.q("SELECT state FROM acct_blocks WHERE hash = ?", (block.hash_hex,))
            parts = dict(
                sql.q(
                    "SELECT account, sats FROM acct_block_parts WHERE block_hash = ?",
                    (block.hash_hex,),
                )
            )
            assert sum(parts.values()) == block.reward_sats - FEE.of(block.reward_sats)
            assert parts == reference[block.hash_hex].credits
            paid_together.append(len(parts))
            if block.hash_hex == lost.hash_hex:
                assert state == [("orphaned",)]
                assert not sql.has_transaction(f"mature:{lost.hash_hex}")
                assert sql.has_transaction(f"reverse:found:{lost.hash_hex}")
                continue
            assert state == [("credited",)]
            for account, sats in parts.items():
                expected[account] = expected.get(account, 0) + sats
        assert max(paid_together) == len(MINERS)  # windows span the three miners' shares
        balances = sql.balances("miner:")
        assert balances == {f"miner:{a}": v for a, v in expected.items() if v}  # no immature left
        assert sum(balances.values()) == sum(
            b.reward_sats - FEE.of(b.reward_sats) for b in found if b is not lost
        )
        lines = block_lines(sql, "alice")
    finally:
        sql.close()
    kept_heights = sorted(b.height for b in found if b is not lost)
    assert sorted(ln.height for ln in lines if ln.state == "credited") == kept_heights
    statement = await asyncio.to_thread(
        hashfarm, "accounts", "statement", "alice", "--storage-url", url
    )
    assert statement.returncode == 0, statement.stderr
    for height in kept_heights:
        assert f"of the window of block {height:,} (pplns)" in statement.stdout, statement.stdout
    assert "(reversed: the block left the chain)" in statement.stdout
    listed = await asyncio.to_thread(hashfarm, "accounts", "list", "--storage-url", url, "--json")
    assert {r["account"]: r["spendable"] for r in orjson.loads(listed.stdout)} == (expected)
