"""`hashfarm calc --rpc-url` against the real bcoin regtest node, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hashfarm.chain.networks import get_network
from hashfarm.chain.pow import bits_to_difficulty
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.node.rpc import RPCClient
from nodes import RegtestNode, mine_template_block

pytestmark = pytest.mark.node

EXE = Path(sys.executable).with_name("hashfarm")
REGTEST = get_network("regtest")


async def _calc(node: RegtestNode, *args: str) -> Any:
    """Run the CLI in a subprocess (off the event loop) and parse its JSON."""
    cmd = [str(EXE), "calc", *args, "--rpc-url", node.rpc_url, "--rpc-password", node.api_key,
           "--network", "regtest", "--json"]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True,
                                   timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_hashprice_measures_fees_from_the_tip_coinbase(
    regtest_node: RegtestNode, rpc: RPCClient
) -> None:
    await regtest_node.mine(1)  # a new tip drops bcoin's cached template
    await regtest_node.mempool_txs(3)
    template = await rpc.getblocktemplate()
    fees = sum(t["fee"] for t in template["transactions"])
    assert fees > 0
    _, verdict = await mine_template_block(rpc)  # our coinbase claims subsidy + these fees
    assert verdict is None
    height = template["height"]

    doc = await _calc(regtest_node, "hashprice", "--fee-window", "1", "--price", "50000")
    assert doc["height"] == height
    assert doc["fees_btc_per_block"] == pytest.approx(fees / 1e8, abs=1e-12)
    assert doc["difficulty"] == bits_to_difficulty(int(template["bits"], 16))
    assert doc["next_subsidy_btc"] == block_subsidy(height + 1, REGTEST) / 1e8
    subsidy = block_subsidy(height + 1, REGTEST) / 1e8
    expected = 86400 * 1e12 * (subsidy + fees / 1e8) / (doc["difficulty"] * 2**32)
    assert doc["btc_per_th_day"] == pytest.approx(expected)


async def test_fee_average_over_a_window(regtest_node: RegtestNode, rpc: RPCClient) -> None:
    await regtest_node.mine(1)
    await regtest_node.mempool_txs(2)
    template = await rpc.getblocktemplate()
    fees = sum(t["fee"] for t in template["transactions"])
    _, verdict = await mine_template_block(rpc)
    assert verdict is None
    await regtest_node.mine(1)  # an empty block on top: the window of 2 averages both
    doc = await _calc(regtest_node, "hashprice", "--fee-window", "2", "--price", "1")
    assert doc["fee_window_blocks"] == 2
    assert doc["fees_btc_per_block"] == pytest.approx(fees / 2 / 1e8, abs=1e-12)


async def test_odds_and_machine_read_difficulty_from_the_node(regtest_node: RegtestNode) -> None:
    odds = await _calc(regtest_node, "odds", "--hashrate-ths", "0.001")
    assert odds["difficulty"] == bits_to_difficulty(REGTEST.pow_limit_bits)
    assert odds["difficulty"] == pytest.approx(
        0xFFFF / 0x7FFFFF / 256**3, rel=1e-12, abs=0
    )  # 4.66e-10
    assert odds["probability_block_per_day"] == pytest.approx(1.0)  # regtest is trivial
    machine = await _calc(regtest_node, "machine", "S9", "--price", "1")
    assert machine["difficulty"] == odds["difficulty"]


async def test_payback_and_retarget_from_the_node(regtest_node: RegtestNode) -> None:
    await regtest_node.mine(2)
    run = await _calc(regtest_node, "payback", "S9", "--price", "1", "--horizon-days", "3")
    # regtest halves every 150 blocks: at 600 s a block that is every 25 hours
    halvings = run["halving_days"]
    assert len(halvings) >= 2
    assert halvings[1] - halvings[0] == pytest.approx(150 * 600 / 86400)
    projection = await _calc(regtest_node, "retarget")
    assert projection["projected_bits"] == f"{REGTEST.pow_limit_bits:08x}"  # never retargets
    assert projection["retarget_height"] % 2016 == 0
