"""A real pool on 127.0.0.1 against a real node, with a real SQLite ledger, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hashfarm.chain.address import address_to_script
from hashfarm.chain.block import Block
from hashfarm.chain.tx import OutPoint, Transaction, TxIn, TxOut
from hashfarm.errors import RPCError
from hashfarm.node.rpc import RPCClient
from hashfarm.pool.records import BlockRecord, ShareRecord
from hashfarm.pool.service import Pool
from hashfarm.pool.settings import NodeSettings, PoolSettings, StorageSettings, StratumSettings
from hashfarm.pool.storage import make_ledger
from nodes import RegtestNode, bcoin_address

# Distinct P2WPKH scripts for test miners: bcoin regtest accepts their rb1... addresses.
MINER_SCRIPTS = [bytes.fromhex("0014") + bytes([i + 1]) * 20 for i in range(8)]


class Recorder:
    """A PoolObserver that keeps everything it sees (the API's stats do more)."""

    def __init__(self) -> None:
        self.shares: list[ShareRecord] = []
        self.blocks: list[BlockRecord] = []

    def on_share(self, rec: ShareRecord) -> None:
        self.shares.append(rec)

    def on_block(self, rec: BlockRecord) -> None:
        self.blocks.append(rec)


def pool_settings(rpc_url: str, api_key: str, tmp_path: Path, **kw: Any) -> PoolSettings:
    """Settings for a test pool: ephemeral port, fast polling, SQLite in tmp_path."""
    base = PoolSettings(
        network="regtest",
        node=NodeSettings(rpc_url=rpc_url, rpc_password=api_key, poll_interval=0.05),
        stratum=StratumSettings(port=0, raise_nofile=False),
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'pool.sqlite3'}"),
    )
    return replace(base, **kw)


@contextlib.asynccontextmanager
async def running_pool(
    settings: PoolSettings, rpc: RPCClient
) -> AsyncIterator[tuple[Pool, Recorder]]:
    """Start a Pool with a real ledger and a recording observer; stop it (and `rpc`) after."""
    ledger = make_ledger(settings.storage)
    await ledger.start()
    recorder = Recorder()
    pool = Pool(settings, rpc, ledger, [recorder])
    await pool.start()
    try:
        yield pool, recorder
    finally:
        await pool.stop()
        await ledger.close()
        await rpc.close()


async def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll `predicate` every 20 ms until it holds; fail naming `what`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.02)


def accepted_blocks(pool: Pool) -> list[BlockRecord]:
    """Blocks the node took into its chain."""
    return [b for b in pool.found_blocks() if b.accepted_by_node]


OP_TRUE_P2WSH = b"\x00\x20" + hashlib.sha256(b"\x51").digest()  # anyone can spend, by witness


async def witness_spend(node: RegtestNode, rpc: RPCClient) -> str:
    """Put a segwit transaction in the mempool (and its parent): the wallet pays a P2WSH of
    OP_TRUE, then a spend of it carries the script as its witness (no signature needed)."""
    parent_txid = await node.send(bcoin_address(OP_TRUE_P2WSH), 1.0)
    parent = await _find_transaction(rpc, parent_txid)
    vout = next(i for i, o in enumerate(parent.outputs) if o.script_pubkey == OP_TRUE_P2WSH)
    spend = Transaction(
        2,
        (TxIn(OutPoint(parent.txid(), vout), b"", 0xFFFFFFFF, (b"\x51",)),),
        (TxOut(parent.outputs[vout].value - 10_000, OP_TRUE_P2WSH),),
    )
    return str(await rpc.call("sendrawtransaction", spend.serialize().hex()))


async def _find_transaction(rpc: RPCClient, txid: str, depth: int = 50) -> Transaction:
    """A transaction from the mempool or, once miners have already put it in a block (the
    pool moves to each new tip at once), from one of the last `depth` blocks: bcoin keeps no
    transaction index, so getrawtransaction cannot find a confirmed one."""
    with contextlib.suppress(RPCError):
        return Transaction.parse(bytes.fromhex(await rpc.call("getrawtransaction", txid, 0)))
    tip = await rpc.getblockcount()
    for height in range(tip, max(tip - depth, 0), -1):
        block = Block.parse(await rpc.getrawblock(await rpc.getblockhash(height)))
        for tx in block.transactions:
            if tx.txid_hex() == txid:
                return tx
    raise AssertionError(f"transaction {txid} is neither in the mempool nor in the last blocks")


async def coinbase_pays(rpc: RPCClient, block_hash_hex: str, address: str) -> bool:
    """Whether the block's coinbase pays its reward to `address` (read back from the node)."""
    block = Block.parse(await rpc.getrawblock(block_hash_hex))
    first = block.transactions[0].outputs[0]
    return first.script_pubkey == address_to_script(address, "regtest") and first.value > 0
