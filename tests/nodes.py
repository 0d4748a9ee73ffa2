"""Real nodes for the tests: bcoin regtest, Bitcoin Core's consensus engine, PostgreSQL.

Importable from any test (pytest `pythonpath = ["tests"]`); `conftest.py` wraps these in
fixtures. Two independent judges check every block a test mines:

* bcoin (`RegtestNode`, a `hashfarm.node.bcoin.BcoinNode` with test conveniences);
* Bitcoin Core's own validation code (`Judge`: libbitcoinkernel through py-bitcoinkernel),
  which enforces rules bcoin skips on regtest (BIP 34 heights, the coinbase witness nonce).

bcoin's own `generatetoaddress` blocks put the height in the coinbase (OP_1..OP_16 below 17,
plus an extranonce push), so Core accepts them: the warm-up past segwit activation (432)
uses them, and `Judge.check_chain` replays the whole chain, warm-up included.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pbk
import psycopg
import pytest

from hashfarm.chain.address import script_to_address
from hashfarm.chain.block import Block
from hashfarm.chain.coinbase import build_coinbase
from hashfarm.chain.header import BlockHeader
from hashfarm.chain.merkle import merkle_root, witness_commitment, witness_merkle_root
from hashfarm.chain.networks import get_network
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.chain.tx import Transaction, TxOut
from hashfarm.errors import NodeError
from hashfarm.node.bcoin import BcoinNode, find_bcoin
from hashfarm.node.rpc import RPCClient

SEGWIT_HEIGHT = 432  # bcoin regtest: BIP 9 activates segwit for blocks from this height
WARM_UP_HEIGHT = 450  # past segwit, and 350 mature coinbases for the wallet to spend
NETWORK = get_network("regtest-bcoin")  # bcoin's address flavour first
REQUIRE_SERVICES = os.environ.get("HASHFARM_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("HASHFARM_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def service_missing(reason: str) -> None:
    """Skip the test, or fail it when HASHFARM_REQUIRE_SERVICES=1 (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (HASHFARM_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


# -- bcoin ----------------------------------------------------------------------------------


class RegtestNode(BcoinNode):
    """A bcoin regtest node with the helpers tests share: warm-up, mining, mempool txs."""

    reward_address: str = ""  # where `mine` pays (the wallet's address once known)

    async def warm_up(self, height: int = WARM_UP_HEIGHT) -> None:
        """Mine with `generatetoaddress` until the tip is at `height` (past segwit)."""
        async with self.rpc() as rpc:
            missing = height - await rpc.getblockcount()
            if missing > 0:
                await rpc.generatetoaddress(missing, await self.payout_address())

    async def payout_address(self) -> str:
        """The wallet's address, or a fixed one when the node runs without a wallet."""
        if not self.reward_address:
            self.reward_address = (
                await self.wallet_address() if self.wallet else bcoin_address(PAYOUT_SCRIPT)
            )
        return self.reward_address

    async def mine(self, count: int = 1) -> list[str]:
        """Mine `count` blocks with bcoin's own miner; their hashes (display hex)."""
        async with self.rpc() as rpc:
            return await rpc.generatetoaddress(count, await self.payout_address())

    async def mempool_txs(self, count: int, amount_btc: float = 0.5) -> list[str]:
        """Put `count` wallet payments in the mempool; their txids."""
        address = await self.payout_address()
        return [await self.send(address, amount_btc) for _ in range(count)]


def bcoin_problem() -> str | None:
    """Why no bcoin node can run here (None when one can)."""
    if shutil.which("node") is None:
        return "Node.js (`node`) is not installed; the regtest node needs it"
    try:
        find_bcoin(Path(__file__).parent)
    except NodeError as exc:
        return str(exc)
    return None


NATS_HOST, NATS_PORT = "127.0.0.1", 4222  # the development machine's NATS JetStream
NATS_URL = f"nats://{NATS_HOST}:{NATS_PORT}"


def nats_problem() -> str | None:
    """Why the development NATS JetStream server cannot be used (None when it can)."""
    try:
        with socket.create_connection((NATS_HOST, NATS_PORT), timeout=2) as s:
            s.settimeout(2)
            info = s.recv(4096)
    except OSError as exc:
        return f"NATS at {NATS_URL} is not reachable: {exc}"
    if not info.startswith(b"INFO ") or b'"jetstream":true' not in info.replace(b" ", b""):
        return f"NATS at {NATS_URL} has no JetStream (start nats-server with -js)"
    return None


async def start_regtest_node(
    datadir: Path, *, memory: bool = False, wallet: bool = True, warm_up: bool = True
) -> RegtestNode:
    """Start a test's own node (on disk by default, so `restart()` keeps its chain).

    Skips the test (fails it under HASHFARM_REQUIRE_SERVICES=1) when bcoin cannot run.
    """
    if problem := bcoin_problem():
        service_missing(problem)
    node = RegtestNode(datadir, memory=memory, wallet=wallet, api_key=secrets.token_hex(8))
    await node.start()
    try:
        if warm_up:
            await node.warm_up()
    except BaseException:
        await node.stop()
        raise
    return node


# -- blocks from templates, built by hashfarm.chain ----------------------------------------

PAYOUT_SCRIPT = bytes.fromhex("0014") + bytes(range(20))  # P2WPKH to a fixed test key hash


def bcoin_address(script: bytes) -> str:
    """The bcoin-regtest address of `script`."""
    address = script_to_address(script, NETWORK)
    assert address is not None
    return address


def block_from_template(
    template: dict[str, Any],
    payout_script: bytes = PAYOUT_SCRIPT,
    *,
    extranonce: bytes = bytes(8),
    tag: bytes = b"/hashfarm-test/",
    height: int | None = None,
    reward: int | None = None,
) -> Block:
    """A block from `getblocktemplate` with our own coinbase (nonce not yet ground).

    `height` and `reward` override the template's, to build deliberately broken blocks.
    """
    txs = [Transaction.parse(bytes.fromhex(t["data"])) for t in template["transactions"]]
    commitment = None
    # bcoin sends a default_witness_commitment even before activation; "rules" tells.
    if any(rule.lstrip("!") == "segwit" for rule in template.get("rules", ())):
        commitment = witness_commitment(witness_merkle_root([tx.wtxid() for tx in txs]))
    parts = build_coinbase(
        template["height"] if height is None else height,
        [TxOut(template["coinbasevalue"] if reward is None else reward, payout_script)],
        extranonce_size=len(extranonce),
        tag=tag,
        witness_commitment=commitment,
    )
    coinbase = parts.transaction(extranonce)
    header = BlockHeader(
        version=template["version"],
        prev_hash=bytes.fromhex(template["previousblockhash"])[::-1],
        merkle_root=merkle_root([coinbase.txid(), *(tx.txid() for tx in txs)]),
        time=max(template["curtime"], template["mintime"]),
        bits=int(template["bits"], 16),
        nonce=0,
    )
    return Block(header, (coinbase, *txs))


def grind(block: Block) -> Block:
    """The block with the first nonce that meets its target (instant on regtest)."""
    header = block.header
    for nonce in range(1 << 32):
        candidate = replace(header, nonce=nonce)
        if candidate.meets_target():
            return replace(block, header=candidate)
    raise AssertionError("no nonce meets the target; roll the time or the extranonce")


def coinbase_only_block(
    prev_hash: bytes,
    height: int,
    payout_script: bytes = PAYOUT_SCRIPT,
    *,
    time: int,
    push_height: int | None = None,
    value: int | None = None,
) -> Block:
    """A ground regtest block with only a coinbase (witness commitment included), built by
    hashfarm.chain without a node; `push_height` and `value` break BIP 34 or the subsidy."""
    out = TxOut(block_subsidy(height, NETWORK) if value is None else value, payout_script)
    parts = build_coinbase(
        height if push_height is None else push_height,
        [out],
        extranonce_size=8,
        tag=b"/hashfarm-test/",
        witness_commitment=witness_commitment(witness_merkle_root([])),
    )
    coinbase = parts.transaction(height.to_bytes(8, "little"))  # unique per height
    root = merkle_root([coinbase.txid()])
    header = BlockHeader(0x20000000, prev_hash, root, time, NETWORK.pow_limit_bits, 0)
    return grind(Block(header, (coinbase,)))


async def mine_template_block(rpc: RPCClient, **overrides: Any) -> tuple[Block, str | None]:
    """Fetch a template, build and grind a block, submit it: (block, node's verdict)."""
    block = grind(block_from_template(await rpc.getblocktemplate(), **overrides))
    return block, await rpc.submitblock(block.serialize().hex())


# -- Bitcoin Core's consensus engine --------------------------------------------------------

_REASON_PATTERNS = (
    re.compile(r"FAILED \((.+)\)\s*$"),  # ProcessNewBlock: AcceptBlock FAILED (bad-cb-height, ...)
    re.compile(r"ConnectBlock \S+ failed, (.+?)\s*$"),  # ConnectTip: ConnectBlock <hash> failed
    re.compile(r"\[error\] (.+?)\s*$"),
)


class JudgeRejection(AssertionError):
    """Core's engine refused a block that bcoin took (or a test expected valid)."""


@dataclass(frozen=True)
class Verdict:
    """What Core's engine said about one block."""

    valid: bool
    reason: str | None  # Core's reject reason (`bad-cb-height, block height mismatch...`)


class Judge:
    """Bitcoin Core's validation (libbitcoinkernel) fed the blocks a bcoin node holds.

    `check_chain(rpc)` replays every block of the node's active chain that it has not seen,
    in height order, and fails unless Core accepts each and ends on the node's tip.
    """

    def __init__(self, datadir: Path) -> None:
        datadir.mkdir(parents=True, exist_ok=True)
        self._log: deque[str] = deque(maxlen=400)
        self._checked: dict[bytes, tuple[bool, str]] = {}
        self._logging = pbk.LoggingConnection(self._on_log)
        callbacks = pbk.ValidationInterfaceCallbacks(block_checked=self._on_checked)
        self._chainman = pbk.load_chainman(datadir, pbk.ChainType.REGTEST, callbacks)

    def _on_log(self, message: str) -> None:
        self._log.append(message)

    def _on_checked(self, _user_data: object, block: Any, state: Any) -> None:
        valid = state.validation_mode == pbk.ValidationMode.VALID
        self._checked[bytes(block.block_hash)] = (valid, state.block_validation_result.name)

    @property
    def height(self) -> int:
        """Height of Core's active chain."""
        return int(self._chainman.get_active_chain().height)

    def hash_at(self, height: int) -> str:
        """Display-hex hash of Core's active block at `height`."""
        entry = self._chainman.get_active_chain().block_tree_entries[height]
        return bytes(entry.block_hash)[::-1].hex()

    def verdict(self, raw: bytes) -> Verdict:
        """Feed one serialized block to Core and report whether it was accepted and why not."""
        self._log.clear()
        block_hash = Block.parse(raw).hash()
        try:
            self._chainman.process_block(pbk.Block(raw))
        except pbk.ProcessBlockException:
            return Verdict(False, self._reason() or "rejected (no reason logged)")
        valid, result = self._checked.get(block_hash, (True, "UNSET"))
        return Verdict(valid, None if valid else self._reason() or result)

    def _reason(self) -> str | None:
        for line in reversed(self._log):
            for pattern in _REASON_PATTERNS:
                if match := pattern.search(line):
                    return match.group(1)
        return None

    async def check_chain(self, rpc: RPCClient) -> int:
        """Replay the node's new blocks into Core; its height. JudgeRejection on a refusal."""
        tip = await rpc.getblockcount()
        start = await self._fork_height(rpc, tip) + 1
        for first in range(start, tip + 1, 100):
            heights = range(first, min(first + 100, tip + 1))
            hashes = await rpc.batch([("getblockhash", [h]) for h in heights])
            raws = await rpc.batch([("getblock", [h, 0]) for h in hashes])
            for height, block_hash, raw in zip(heights, hashes, raws, strict=True):
                verdict = self.verdict(bytes.fromhex(raw))
                if not verdict.valid:
                    raise JudgeRejection(
                        f"Core rejects block {height} ({block_hash}) that bcoin accepted: "
                        f"{verdict.reason}"
                    )
        best = await rpc.getbestblockhash()
        if self.height != tip or self.hash_at(tip) != best:
            raise JudgeRejection(f"Core's tip {self.height} differs from the node's {best}")
        return tip

    replay_chain = check_chain

    async def _fork_height(self, rpc: RPCClient, tip: int) -> int:
        """Highest height where Core's chain and the node's agree (node reorgs happen)."""
        height = min(self.height, tip)
        while height > 0 and self.hash_at(height) != await rpc.getblockhash(height):
            height -= 1
        return height


# -- PostgreSQL -----------------------------------------------------------------------------


def postgres_problem(server_url: str = POSTGRES_URL) -> str | None:
    """Why PostgreSQL cannot be used (None when it can)."""
    try:
        with psycopg.connect(server_url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {server_url} is not usable: {str(exc).strip().splitlines()[0]}"


def create_database(server_url: str = POSTGRES_URL) -> str:
    """Create a fresh, uniquely named database; its URL."""
    name = f"hashfarm_test_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def drop_database(url: str, server_url: str = POSTGRES_URL) -> None:
    """Drop the database `url` names, ending its sessions first."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
