"""The node's `getblocktemplate` answer in native types (hashes in internal byte order).

Only `node/` knows the RPC's field names: the pool's jobs and the solo miner both build
from this `Template`, never from the raw JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hashfarm.chain.block import Block
from hashfarm.chain.networks import Network, get_network
from hashfarm.chain.pow import bits_to_difficulty, bits_to_target
from hashfarm.errors import NodeError

WITNESS_COMMITMENT_PREFIX = bytes.fromhex("6a24aa21a9ed")  # OP_RETURN PUSH36 aa21a9ed


def gbt_rules(network: str | Network) -> tuple[str, ...]:
    """The `rules` a getblocktemplate request names on `network`: segwit everywhere, and
    signet on signet, where Core refuses the request without it (RPC error -8)."""
    return ("segwit", "signet") if get_network(network).name == "signet" else ("segwit",)


@dataclass(frozen=True, slots=True)
class TemplateTx:
    """One mempool transaction of a template (raw bytes as the block will carry them)."""

    data: bytes  # full serialization, witness included
    txid: bytes  # internal order
    fee: int  # sats


@dataclass(frozen=True, slots=True)
class Template:
    """A `getblocktemplate` answer in native types (hashes in internal order)."""

    height: int
    version: int
    prev_hash: bytes
    bits: int
    curtime: int
    mintime: int
    coinbase_value: int  # sats: subsidy plus fees
    transactions: tuple[TemplateTx, ...]
    witness_commitment: bytes | None  # the 32-byte commitment (None: no segwit tx rules)
    coinbase_aux: bytes  # node's coinbaseaux flags, pushed into the scriptSig
    longpollid: str | None
    transactions_hex: str = ""  # the node's hex of every tx, joined: a block's tail, ready

    def tail_hex(self) -> str:
        """Hex of all non-coinbase transactions in block order (what follows the coinbase)."""
        if self.transactions_hex or not self.transactions:
            return self.transactions_hex
        return "".join(tx.data.hex() for tx in self.transactions)

    @property
    def target(self) -> int:
        """The network target a block hash must not exceed."""
        return bits_to_target(self.bits)

    @property
    def difficulty(self) -> float:
        """Network difficulty (regtest: about 4.66e-10)."""
        return bits_to_difficulty(self.bits)

    @property
    def txids(self) -> list[bytes]:
        """Non-coinbase txids in block order (the merkle branch's input)."""
        return [tx.txid for tx in self.transactions]

    @classmethod
    def from_block(cls, block: Block, *, curtime: int | None = None) -> Template:
        """The template a real block's miner worked on (fees unknown: 0), for replays and
        benchmarks on mainnet-sized data. `curtime` defaults to the block's own time."""
        header = block.header
        txs = tuple(TemplateTx(tx.serialize(), tx.txid(), 0) for tx in block.transactions[1:])
        return cls(
            height=block.height_from_coinbase(),
            version=header.version,
            prev_hash=header.prev_hash,
            bits=header.bits,
            curtime=header.time if curtime is None else curtime,
            mintime=header.time - 3600,
            coinbase_value=block.transactions[0].total_out(),
            transactions=txs,
            witness_commitment=block.witness_commitment_in_coinbase(),
            coinbase_aux=b"",
            longpollid=None,
            transactions_hex="".join(tx.data.hex() for tx in txs),  # as parse_template keeps it
        )


def parse_template(gbt: Mapping[str, Any]) -> Template:
    """Turn a `getblocktemplate` result into a Template; NodeError names a bad field."""
    try:
        return _parse_template(gbt)
    except (KeyError, TypeError, ValueError) as exc:
        raise NodeError(f"unusable block template ({exc!r})") from exc


def _parse_template(gbt: Mapping[str, Any]) -> Template:
    txs = tuple(
        TemplateTx(bytes.fromhex(t["data"]), bytes.fromhex(t["txid"])[::-1], int(t.get("fee", 0)))
        for t in gbt["transactions"]
    )
    aux = gbt.get("coinbaseaux") or {}
    return Template(
        height=int(gbt["height"]),
        version=int(gbt["version"]),
        prev_hash=bytes.fromhex(gbt["previousblockhash"])[::-1],
        bits=int(gbt["bits"], 16),
        curtime=int(gbt["curtime"]),
        mintime=int(gbt.get("mintime", 0)),
        coinbase_value=int(gbt["coinbasevalue"]),
        transactions=txs,
        witness_commitment=_commitment(gbt.get("default_witness_commitment")),
        coinbase_aux=bytes.fromhex(aux.get("flags", "")),
        longpollid=gbt.get("longpollid"),
        transactions_hex="".join(t["data"] for t in gbt["transactions"]),
    )


def _commitment(script_hex: str | None) -> bytes | None:
    """The 32-byte commitment inside the node's `default_witness_commitment` script."""
    if not script_hex:
        return None
    script = bytes.fromhex(script_hex)
    if len(script) != 38 or not script.startswith(WITNESS_COMMITMENT_PREFIX):
        raise ValueError(f"default_witness_commitment is not a commitment: {script_hex}")
    return script[6:]
