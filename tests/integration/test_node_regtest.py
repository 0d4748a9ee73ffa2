"""The real bcoin regtest node and Core's consensus engine judge blocks built by hashfarm.chain."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hashfarm.chain.block import Block
from hashfarm.chain.merkle import witness_commitment, witness_commitment_script, witness_merkle_root
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.errors import NodeAuthError, NodeError, RPCError
from hashfarm.node.bcoin import BcoinNode, BcoinPorts, free_port
from hashfarm.node.bcoin import _confirmed as bcoin_confirmed
from hashfarm.node.rpc import RPCClient
from nodes import (
    NETWORK,
    SEGWIT_HEIGHT,
    WARM_UP_HEIGHT,
    Judge,
    JudgeRejection,
    RegtestNode,
    bcoin_problem,
    block_from_template,
    grind,
    mine_template_block,
    service_missing,
    start_regtest_node,
)

pytestmark = pytest.mark.node


async def test_session_node_is_warm_and_core_agrees(rpc: RPCClient, judge: Judge) -> None:
    info = await rpc.getblockchaininfo()
    assert info["chain"] == "regtest"
    assert info["blocks"] >= WARM_UP_HEIGHT > SEGWIT_HEIGHT
    # bcoin's own warm-up blocks carry BIP 34 heights, so Core's engine takes all of them.
    assert await judge.check_chain(rpc) == info["blocks"]
    assert judge.hash_at(info["blocks"]) == info["bestblockhash"]


async def test_template_block_with_mempool_txs_is_accepted_by_both(
    regtest_node: RegtestNode, rpc: RPCClient, judge: Judge
) -> None:
    await regtest_node.mine(1)  # a new tip drops bcoin's cached template
    txids = await regtest_node.mempool_txs(3)
    template = await rpc.getblocktemplate()
    # bcoin serves a cached template for up to 10 s (docs/node.md): if anything else asked for
    # one between the new tip and our payments, the payments show up once that cache expires.
    deadline = asyncio.get_running_loop().time() + 15
    while not set(txids) <= {t["txid"] for t in template["transactions"]}:
        assert asyncio.get_running_loop().time() < deadline, "payments never reached a template"
        await asyncio.sleep(0.5)
        template = await rpc.getblocktemplate()

    block = grind(block_from_template(template))
    txs = block.transactions[1:]
    ours = witness_commitment(witness_merkle_root([tx.wtxid() for tx in txs]))
    assert witness_commitment_script(ours).hex() == template["default_witness_commitment"]
    assert block.coinbase.outputs[0].value == template["coinbasevalue"]
    assert template["coinbasevalue"] == block_subsidy(template["height"], NETWORK) + sum(
        t["fee"] for t in template["transactions"]
    )

    assert await rpc.submitblock(block.serialize().hex()) is None
    assert await rpc.getblockcount() == template["height"]
    assert await rpc.getbestblockhash() == block.hash_hex()
    assert set(txids).isdisjoint(await rpc.getrawmempool())
    node_copy = Block.parse(await rpc.getrawblock(block.hash_hex()))
    assert node_copy.serialize() == block.serialize()
    assert node_copy.height_from_coinbase() == template["height"]
    assert await judge.check_chain(rpc) == template["height"]


async def test_broken_coinbase_is_rejected_with_a_reason_by_both(
    rpc: RPCClient, judge: Judge
) -> None:
    await judge.check_chain(rpc)  # Core must know the parent to judge the child
    height = await rpc.getblockcount()
    template = await rpc.getblocktemplate()
    greedy = grind(block_from_template(template, reward=template["coinbasevalue"] + 1))

    assert await rpc.submitblock(greedy.serialize().hex()) == "bad-cb-amount"
    assert await rpc.getblockcount() == height
    verdict = judge.verdict(greedy.serialize())
    assert not verdict.valid
    assert "bad-cb-amount" in str(verdict.reason)
    assert await judge.check_chain(rpc) == height


async def test_bad_merkle_root_and_high_hash_reasons(rpc: RPCClient) -> None:
    template = await rpc.getblocktemplate()
    block = grind(block_from_template(template))
    mutated = grind(replace(block, header=replace(block.header, merkle_root=bytes(32))))
    assert await rpc.submitblock(mutated.serialize().hex()) == "bad-txnmrklroot"
    nonce = block.header.nonce
    while replace(block.header, nonce=nonce).meets_target():
        nonce += 1
    missed = replace(block, header=replace(block.header, nonce=nonce))
    assert await rpc.submitblock(missed.serialize().hex()) == "high-hash"


async def test_core_catches_a_bip34_violation_that_bcoin_accepts(
    tmp_path: Path, make_judge: Callable[[], Judge]
) -> None:
    node = await start_regtest_node(tmp_path / "bcoin", memory=True, wallet=False, warm_up=False)
    try:
        async with node.rpc() as rpc:
            await node.mine(3)
            template = await rpc.getblocktemplate()
            liar = grind(block_from_template(template, height=template["height"] + 1))
            assert await rpc.submitblock(liar.serialize().hex()) is None  # bcoin: fine
            assert await rpc.getbestblockhash() == liar.hash_hex()
            with pytest.raises(JudgeRejection, match="bad-cb-height"):
                await make_judge().check_chain(rpc)
    finally:
        await node.stop()


async def test_own_node_restarts_with_its_chain_and_wallet(
    tmp_path: Path, make_judge: Callable[[], Judge]
) -> None:
    node = await start_regtest_node(tmp_path / "bcoin")
    try:
        async with node.rpc() as rpc:
            block, verdict = await mine_template_block(rpc)
            assert verdict is None
            ports, best = node.ports, await rpc.getbestblockhash()
            assert best == block.hash_hex()
            await node.restart()
            assert node.ports == ports
            assert await rpc.getbestblockhash() == best  # same client: it reconnects
            assert len(await node.mempool_txs(2)) == 2  # the wallet survived too
            await node.mine(1)
            assert await make_judge().check_chain(rpc) == WARM_UP_HEIGHT + 2
    finally:
        await node.stop()
    assert not node.running


async def test_node_errors_map_to_our_exceptions(regtest_node: RegtestNode, rpc: RPCClient) -> None:
    async with RPCClient(regtest_node.rpc_url, password="wrong", retries=0) as bad:
        with pytest.raises(NodeAuthError):
            await bad.getblockcount()
    with pytest.raises(RPCError) as info:
        await rpc.call("nosuchmethod")
    assert info.value.code == -32601
    results = await rpc.batch(
        ["getblockcount", ("getblockhash", [0]), "nosuchmethod"], return_exceptions=True
    )
    assert results[1] == "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    assert isinstance(results[2], RPCError)


async def test_judge_follows_a_reorg(tmp_path: Path, make_judge: Callable[[], Judge]) -> None:
    node = await start_regtest_node(tmp_path / "bcoin", memory=True, wallet=False, warm_up=False)
    try:
        async with node.rpc() as rpc:
            await node.mine(5)
            judge = make_judge()
            assert await judge.check_chain(rpc) == 5
            old_tip = await rpc.getbestblockhash()
            # A longer branch from height 3 replaces blocks 4 and 5.
            template = await rpc.getblocktemplate()
            parent = await rpc.getblockhash(3)
            for height in (4, 5, 6):
                fork = {**template, "previousblockhash": parent, "height": height}
                block = grind(block_from_template(fork, tag=b"/fork/"))
                assert await rpc.submitblock(block.serialize().hex()) is None
                parent = block.hash_hex()
            assert await rpc.getbestblockhash() == parent
            assert await judge.check_chain(rpc) == 6
            assert judge.hash_at(6) == parent
            assert judge.hash_at(5) != old_tip
    finally:
        await node.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only nobody has reaped it


async def test_node_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    if problem := bcoin_problem():
        service_missing(problem)
    script = (
        "import asyncio, sys, time\n"
        "from hashfarm.node.bcoin import BcoinNode\n"
        "node = BcoinNode(sys.argv[1], memory=True, wallet=False)\n"
        "asyncio.run(node.start())\n"
        "print(node.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    assert parent.stdout is not None
    line = await asyncio.wait_for(parent.stdout.readline(), 30)
    pid = int(line)
    assert _alive(pid)
    parent.kill()  # SIGKILL: no cleanup code of ours runs
    await parent.wait()
    for _ in range(100):
        if not _alive(pid):
            break
        await asyncio.sleep(0.05)
    assert not _alive(pid), "bcoin outlived the process that started it"


async def test_core_requires_the_coinbase_witness_nonce_bcoin_fills_in(
    tmp_path: Path, make_judge: Callable[[], Judge]
) -> None:
    node = await start_regtest_node(tmp_path / "bcoin", memory=True, wallet=False)
    try:
        async with node.rpc() as rpc:
            judge = make_judge()
            await judge.check_chain(rpc)
            block = grind(block_from_template(await rpc.getblocktemplate()))
            coinbase = block.transactions[0]
            bare_input = replace(coinbase.inputs[0], witness=())
            bare = replace(block, transactions=(
                replace(coinbase, inputs=(bare_input,)), *block.transactions[1:]))  # fmt: skip
            assert bare.hash() == block.hash()  # the witness is not in the header's commitment

            verdict = judge.verdict(bare.serialize())
            assert not verdict.valid
            assert "bad-witness-nonce-size" in str(verdict.reason)
            # bcoin quietly adds the nonce (so does Core's submitblock; P2P peers do not).
            assert await rpc.submitblock(bare.serialize().hex()) is None
            assert await rpc.getrawblock(block.hash_hex()) == block.serialize()
            assert await judge.check_chain(rpc) == WARM_UP_HEIGHT + 1
    finally:
        await node.stop()


async def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    if problem := bcoin_problem():
        service_missing(problem)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = BcoinPorts(http=taken, p2p=free_port(), wallet=free_port())
        node = BcoinNode(tmp_path, memory=True, wallet=False, ports=ports)
        with pytest.raises(NodeError, match="EADDRINUSE") as info:
            await node.start()
    assert "exited at start-up" in str(info.value)
    assert not node.running


async def test_proposeblock_checks_everything_but_the_proof_of_work(rpc: RPCClient) -> None:
    template = await rpc.getblocktemplate()
    block = block_from_template(template)
    nonce = block.header.nonce
    while replace(block.header, nonce=nonce).meets_target():
        nonce += 1  # a hash that misses the target: a proposal must not care
    unmined = replace(block, header=replace(block.header, nonce=nonce))
    assert await rpc.proposeblock(unmined.serialize().hex()) is None
    greedy = block_from_template(template, reward=template["coinbasevalue"] + 1)
    assert await rpc.proposeblock(greedy.serialize().hex()) == "bad-cb-amount"
    orphan = replace(unmined, header=replace(unmined.header, prev_hash=bytes(32)))
    assert await rpc.proposeblock(orphan.serialize().hex()) == "inconclusive-not-best-prevblk"
    assert await rpc.getbestblockhash() == template["previousblockhash"]


async def test_wallet_tells_a_mined_payment_from_one_still_in_the_mempool(
    regtest_node: RegtestNode,
) -> None:
    """`BcoinNode.send` accepts a payment that miners took into a block before it looked at
    the mempool: the wallet's gettransaction reports its confirmations (bcoin's wallet RPC)."""
    [txid] = await regtest_node.mempool_txs(1)
    async with regtest_node.wallet_rpc() as wallet:
        assert not await bcoin_confirmed(wallet, txid)
        await regtest_node.mine(1)
        deadline = asyncio.get_running_loop().time() + 10
        while not await bcoin_confirmed(wallet, txid):  # the wallet follows the chain async
            assert asyncio.get_running_loop().time() < deadline, "never seen as confirmed"
            await asyncio.sleep(0.1)
        assert not await bcoin_confirmed(wallet, "00" * 32)  # unknown: not confirmed
