"""Payouts end to end on the regtest node: pooled mining, credits, one batched transaction
through bcoin's wallet, confirmations followed through a reorg, and `kill -9` mid-payout.

Three miners whose user names are bcoin regtest addresses (`ADDRESS.rig`, the account is
the address) mine through a real pooled-mode Pool into its SQLite ledger; 100 blocks mature
the pool's blocks and `hashfarm accounts credit --once` credits them. That ledger is made
once for the module; each test pays from its own copy of it, with the `hashfarm accounts
payout` CLI in fresh processes, from the session node's wallet (funded by the warm-up).

The kill test stops the payout at a named point with the test hook
`HASHFARM_PAYOUT_PAUSE_AT=planned|signed|broadcast` (the process says `paused at POINT` on
stderr and blocks there), kills it with SIGKILL, runs the payout again and checks, on the
chain, that every miner was paid exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
import orjson
import pytest

from hashfarm.accounting.payouts import PAYOUTS_PENDING
from hashfarm.accounting.store import connect
from hashfarm.chain.address import address_to_script
from hashfarm.chain.block import Block
from hashfarm.chain.tx import Transaction, TxIn, TxOut
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.settings import VardiffSettings
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, accepted_blocks, pool_settings, running_pool, wait_for
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node

MINERS = tuple(bcoin_address(MINER_SCRIPTS[i]) for i in range(3))
NETWORK = "regtest-bcoin"
CONFIRMATIONS = 2


# This module's own node (conftest's module_node): its figures depend on the block reward,
# which halves every 150 blocks on regtest, and the session node is as tall as the tests
# before this one made it.
@pytest.fixture(scope="module")
def regtest_node(module_node: RegtestNode) -> RegtestNode:
    return module_node


@pytest.fixture(scope="module")
def rpc(module_rpc: RPCClient) -> RPCClient:
    return module_rpc


def hashfarm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would (a fresh process)."""
    code = "from hashfarm.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@dataclass(frozen=True)
class Credited:
    """The module's ledger: the pool's SQLite file after crediting, and what it holds."""

    path: Path
    balances: dict[str, int]  # account (= address) -> spendable sats
    password_file: Path


@pytest.fixture(scope="module")
async def credited(regtest_node: RegtestNode, tmp_path_factory: pytest.TempPathFactory) -> Credited:
    tmp = tmp_path_factory.mktemp("payouts")
    settings = pool_settings(
        regtest_node.rpc_url,
        regtest_node.api_key,
        tmp,
        mode="pooled",
        payout_address=bcoin_address(MINER_SCRIPTS[7]),
        vardiff=VardiffSettings(initial=1e-11, minimum=1e-12, enabled=False),
    )
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        miners = [StratumTestMiner(pool.stratum_port, f"{name}.rig") for name in MINERS]
        for miner in miners:
            await miner.start()
        while len(accepted_blocks(pool)) < 3:
            for miner in miners:
                await miner.mine_share()
        for miner in miners:
            await miner.close()
        await wait_for(
            lambda: len([b for b in recorder.blocks if b.accepted_by_node]) >= 3,
            10,
            "the block records",
        )
    await regtest_node.mine(100)
    password_file = tmp / "rpc-password"
    password_file.write_text(regtest_node.api_key)
    url = settings.storage.url
    done = await asyncio.to_thread(
        hashfarm,
        "accounts", "credit", "--storage-url", url, "--rpc-url", regtest_node.rpc_url,
        "--rpc-password-file", str(password_file), "--scheme", "pplns", "--once",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sql = connect(url)
    try:
        balances = {a.removeprefix("miner:"): v for a, v in sql.balances("miner:").items()}
    finally:
        sql.close()
    assert set(balances) == set(MINERS), balances  # every miner earned, nothing immature
    return Credited(Path(url.removeprefix("sqlite:///")), balances, password_file)


def copy_ledger(credited: Credited, tmp_path: Path) -> str:
    """A private copy of the module's credited ledger; its URL."""
    path = tmp_path / "ledger.sqlite3"
    shutil.copyfile(credited.path, path)
    return f"sqlite:///{path}"


def payout_args(node: RegtestNode, credited: Credited, url: str, *more: str) -> list[str]:
    return [
        "accounts", "payout", "--storage-url", url, "--network", NETWORK,
        "--rpc-url", node.rpc_url, "--rpc-password-file", str(credited.password_file),
        "--wallet", "bcoin", "--wallet-url", node.wallet_url,
        "--confirmations", str(CONFIRMATIONS), *more,
        # every miner is due whatever the subsidy: regtest halves it every 150 blocks, and the
        # session's node is as tall as the tests before this one made it
        "--threshold-sats", "1000",
    ]  # fmt: skip


def payouts_table(url: str) -> list[tuple[int, str, str | None, int, str | None]]:
    """(id, state, txid, confirmations, block_hash) of every payout."""
    sql = connect(url)
    try:
        rows = sql.q("SELECT id, state, txid, confirmations, block_hash FROM acct_payouts")
        return [(int(i), str(s), t, int(c), b) for i, s, t, c, b in rows]
    finally:
        sql.close()


async def payments_since(rpc: RPCClient, height: int) -> dict[str, list[tuple[str, int]]]:
    """address -> [(txid, sats)] of every output to a miner in blocks above `height`."""
    scripts = {address_to_script(a, NETWORK): a for a in MINERS}
    found: dict[str, list[tuple[str, int]]] = {a: [] for a in MINERS}
    for h in range(height + 1, await rpc.getblockcount() + 1):
        block = Block.parse(await rpc.getrawblock(await rpc.getblockhash(h)))
        for tx in block.transactions[1:]:
            for out in tx.outputs:
                if out.script_pubkey in scripts:
                    found[scripts[out.script_pubkey]].append((tx.txid_hex(), out.value))
    return found


async def test_balances_are_paid_in_one_transaction_followed_through_a_reorg(
    regtest_node: RegtestNode, rpc: RPCClient, credited: Credited, tmp_path: Path
) -> None:
    url = copy_ledger(credited, tmp_path)
    start = await rpc.getblockcount()
    dry = await asyncio.to_thread(
        hashfarm, *payout_args(regtest_node, credited, url, "--dry-run", "--json")
    )
    assert dry.returncode == 0, dry.stderr
    plan = orjson.loads(dry.stdout)
    assert {i["account"]: i["amount"] for i in plan["items"]} == credited.balances
    assert payouts_table(url) == []  # a dry run writes nothing

    paid = await asyncio.to_thread(hashfarm, *payout_args(regtest_node, credited, url))
    assert paid.returncode == 0, paid.stderr
    assert "payout 1 planned" in paid.stdout
    assert "payout 1 sent" in paid.stdout, paid.stdout
    [(pid, state, txid, conf, _)] = payouts_table(url)
    assert (pid, state, conf) == (1, "sent", 0)
    assert txid is not None
    assert txid in await rpc.getrawmempool()  # in the node's mempool, one transaction

    [block_hash] = await regtest_node.mine(1)
    again = await asyncio.to_thread(hashfarm, *payout_args(regtest_node, credited, url))
    assert again.returncode == 0, again.stderr
    assert f"1: 1 of {CONFIRMATIONS} confirmations" in again.stdout, again.stdout
    assert "planned" not in again.stdout  # nobody is due again
    assert payouts_table(url) == [(1, "sent", txid, 1, block_hash)]

    # the payout's block leaves the chain (bcoin 1.0.2's invalidateblock does not put its
    # transactions back in the mempool): the next run finds it nowhere, broadcasts the
    # recorded bytes again and records it unconfirmed
    await rpc.call("invalidateblock", block_hash)
    assert txid not in await rpc.getrawmempool()
    back = await asyncio.to_thread(hashfarm, *payout_args(regtest_node, credited, url))
    assert back.returncode == 0, back.stderr
    assert "broadcasting it again" in back.stderr
    assert payouts_table(url) == [(1, "sent", txid, 0, None)], back.stdout + back.stderr
    assert txid in await rpc.getrawmempool()

    await regtest_node.mine(CONFIRMATIONS)
    final = await asyncio.to_thread(hashfarm, *payout_args(regtest_node, credited, url))
    assert final.returncode == 0, final.stderr
    assert "payout 1 confirmed" in final.stdout, final.stdout
    [(_, state, _, conf, _)] = payouts_table(url)
    assert (state, conf) == ("confirmed", CONFIRMATIONS)

    on_chain = await payments_since(rpc, start)
    assert on_chain == {a: [(txid, sats)] for a, sats in credited.balances.items()}
    sql = connect(url)
    try:
        assert sql.balances("miner:") == {}  # everything paid
        assert sql.balance(PAYOUTS_PENDING) == 0
        assert sql.balance("payouts") == sum(credited.balances.values())
        assert sql.balance("payouts:network-fee") > 0  # the pool's wallet paid the fee
    finally:
        sql.close()
    shown = await asyncio.to_thread(
        hashfarm, "accounts", "show", MINERS[0], "--storage-url", url, "--json"
    )
    assert shown.returncode == 0, shown.stderr
    [row] = orjson.loads(shown.stdout)["payouts"]
    assert (row["state"], row["txid"], row["amount"]) == (
        "confirmed",
        txid,
        credited.balances[MINERS[0]],
    )


async def reaches_mempool(rpc: RPCClient, txid: str, seconds: float) -> bool:
    """Whether `txid` is in the mempool within `seconds` (bcoin's sendrawtransaction answers
    before its mempool has taken the transaction)."""
    deadline = time.monotonic() + seconds
    while txid not in await rpc.getrawmempool():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def run_until_paused(args: list[str], point: str) -> str:
    """Start the CLI with the pause hook at `point`, wait until it stops there, kill -9 it;
    what it printed on stderr."""
    code = "from hashfarm.cli.main import main; main()"
    env = {**os.environ, "HASHFARM_PAYOUT_PAUSE_AT": point}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    said: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        for line in proc.stderr:
            said.append(line)
            if line.startswith(f"paused at {point}"):
                break
            assert time.monotonic() < deadline, "".join(said)
        else:
            raise AssertionError(f"the payout never paused at {point}: {''.join(said)}")
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9: no cleanup of any kind
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    return "".join(said)


@pytest.mark.parametrize("point", ["planned", "signed", "broadcast"])
async def test_kill_9_anywhere_in_a_payout_pays_every_miner_exactly_once(
    regtest_node: RegtestNode, rpc: RPCClient, credited: Credited, tmp_path: Path, point: str
) -> None:
    url = copy_ledger(credited, tmp_path)
    start = await rpc.getblockcount()
    args = payout_args(regtest_node, credited, url)
    await asyncio.to_thread(run_until_paused, args, point)
    [(_, state, txid, _, _)] = payouts_table(url)
    in_mempool = txid is not None and await reaches_mempool(
        rpc, txid, 5.0 if point == "broadcast" else 0.0
    )
    # what the dead run left: planned (no transaction), signed and recorded but not
    # broadcast, or broadcast (in the mempool) but not recorded as sent
    assert (state, txid is None, in_mempool) == {
        "planned": ("planned", True, False),
        "signed": ("signed", False, False),
        "broadcast": ("signed", False, True),
    }[point]

    resumed = await asyncio.to_thread(hashfarm, *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "payout 1 sent" in resumed.stdout, resumed.stdout + resumed.stderr
    assert "planned" not in resumed.stdout.replace("payout 1 planned", "")  # no second payout
    [(_, state, sent_txid, _, _)] = payouts_table(url)
    assert state == "sent"
    if txid is not None:
        assert sent_txid == txid  # the recorded transaction, not a new one

    await regtest_node.mine(CONFIRMATIONS)
    final = await asyncio.to_thread(hashfarm, *args)
    assert final.returncode == 0, final.stderr
    assert "payout 1 confirmed" in final.stdout, final.stdout
    assert [p[1] for p in payouts_table(url)] == ["confirmed"]
    on_chain = await payments_since(rpc, start)
    assert on_chain == {a: [(sent_txid, sats)] for a, sats in credited.balances.items()}


async def spend_elsewhere(node: RegtestNode, rpc: RPCClient, raw_hex: str) -> tuple[str, str]:
    """Spend the first input of `raw_hex` by another transaction of the wallet (signed by
    bcoin's wallet REST API), and mine it; (its txid, the block's hash)."""
    prevout = Transaction.parse(bytes.fromhex(raw_hex)).inputs[0].prevout
    coin = await rpc.gettxout(prevout.txid[::-1].hex(), prevout.index, False)
    value = round(Decimal(repr(coin["value"])) * 100_000_000)
    back = address_to_script(await node.payout_address(), NETWORK)
    unsigned = Transaction(
        2, (TxIn(prevout, b"", 0xFFFFFFFF, ()),), (TxOut(value - 10_000, back),), 0
    )
    token = base64.b64encode(f"x:{node.api_key}".encode()).decode()
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"}) as session,
        session.post(
            f"{node.wallet_url}wallet/primary/sign", json={"tx": unsigned.serialize().hex()}
        ) as resp,
    ):
        signed = await resp.json()
    txid = await rpc.sendrawtransaction(signed["hex"])
    [block_hash] = await node.mine(1)
    return txid, block_hash


async def test_a_payout_whose_inputs_are_spent_elsewhere_is_conflicted_then_abandoned(
    regtest_node: RegtestNode, rpc: RPCClient, credited: Credited, tmp_path: Path
) -> None:
    url = copy_ledger(credited, tmp_path)
    start = await rpc.getblockcount()
    args = payout_args(regtest_node, credited, url, "--broadcast-wait", "1")
    await asyncio.to_thread(run_until_paused, args, "signed")  # recorded, never broadcast
    sql = connect(url)
    try:
        [(raw, txid)] = sql.q("SELECT raw_tx, txid FROM acct_payouts")
    finally:
        sql.close()
    other, _ = await spend_elsewhere(regtest_node, rpc, str(raw))

    stuck = await asyncio.to_thread(hashfarm, *args)
    assert stuck.returncode == 0, stuck.stderr
    assert "payout 1 CONFLICTED" in stuck.stdout, stuck.stdout + stuck.stderr
    assert "nobody is due a payout" in stuck.stdout  # the balances wait in payouts:pending
    assert payouts_table(url)[0][1] == "conflicted"
    refused = await asyncio.to_thread(
        hashfarm, *payout_args(regtest_node, credited, url, "--abandon", "9")
    )
    assert refused.returncode == 1
    assert "no payout 9" in refused.stderr

    given_back = await asyncio.to_thread(
        hashfarm, *payout_args(regtest_node, credited, url, "--abandon", "1")
    )
    assert given_back.returncode == 0, given_back.stderr
    assert "payout 1 abandoned" in given_back.stdout
    sql = connect(url)
    try:
        assert {a.removeprefix("miner:"): v for a, v in sql.balances("miner:").items()} == (
            credited.balances
        )
        assert sql.balance(PAYOUTS_PENDING) == 0
    finally:
        sql.close()

    paid = await asyncio.to_thread(hashfarm, *args)
    assert "payout 2 sent" in paid.stdout, paid.stdout + paid.stderr
    await regtest_node.mine(CONFIRMATIONS)
    final = await asyncio.to_thread(hashfarm, *args)
    assert "payout 2 confirmed" in final.stdout, final.stdout + final.stderr
    [(_, _, _, _, _), (_, state, new_txid, _, _)] = payouts_table(url)
    assert state == "confirmed"
    assert new_txid not in (txid, other)
    on_chain = await payments_since(rpc, start)
    assert on_chain == {a: [(new_txid, sats)] for a, sats in credited.balances.items()}


async def test_a_conflicted_payout_is_sent_again_when_the_conflicting_spend_leaves_the_chain(
    regtest_node: RegtestNode, rpc: RPCClient, credited: Credited, tmp_path: Path
) -> None:
    url = copy_ledger(credited, tmp_path)
    start = await rpc.getblockcount()
    args = payout_args(regtest_node, credited, url, "--broadcast-wait", "1")
    await asyncio.to_thread(run_until_paused, args, "signed")
    sql = connect(url)
    try:
        [(raw, txid)] = sql.q("SELECT raw_tx, txid FROM acct_payouts")
    finally:
        sql.close()
    _, conflict_block = await spend_elsewhere(regtest_node, rpc, str(raw))
    stuck = await asyncio.to_thread(hashfarm, *args)
    assert "payout 1 CONFLICTED" in stuck.stdout, stuck.stdout + stuck.stderr

    # the block with the conflicting spend leaves the chain (bcoin does not put its
    # transactions back in the mempool): the payout's inputs are unspent again
    await rpc.call("invalidateblock", conflict_block)
    again = await asyncio.to_thread(hashfarm, *args)
    assert again.returncode == 0, again.stderr
    assert "no longer conflicted" in again.stderr, again.stdout + again.stderr
    assert payouts_table(url) == [(1, "sent", txid, 0, None)]
    await regtest_node.mine(CONFIRMATIONS)
    final = await asyncio.to_thread(hashfarm, *args)
    assert "payout 1 confirmed" in final.stdout, final.stdout + final.stderr
    on_chain = await payments_since(rpc, start)
    assert on_chain == {a: [(txid, sats)] for a, sats in credited.balances.items()}
