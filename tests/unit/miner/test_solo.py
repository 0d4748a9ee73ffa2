"""Solo work from a template: the block assembled around a winner is consensus-shaped.

The template is the one a node would have offered for mainnet block 482683 (its real
transactions, witness commitment, height and value); only the coinbase is ours.
"""

from __future__ import annotations

from typing import Any

import pytest

from hashfarm.chain.block import Block
from hashfarm.chain.coinbase import bip34_height
from hashfarm.chain.hashes import sha256d
from hashfarm.chain.merkle import WITNESS_RESERVED_VALUE, witness_commitment, witness_merkle_root
from hashfarm.errors import NodeError
from hashfarm.miner.protocol import FoundShare
from hashfarm.miner.solo import COINBASE_TAG, build_solo_work
from hashfarm.node.template import parse_template
from realdata import load_block_bytes

PAYOUT = bytes.fromhex("0014") + bytes(range(20))


def _gbt() -> dict[str, Any]:
    block = Block.parse(load_block_bytes("mainnet-482683"))
    txs = block.transactions[1:]
    commitment = witness_commitment(witness_merkle_root([tx.wtxid() for tx in txs]))
    h = block.header
    return {
        "height": 482683,
        "version": h.version,
        "previousblockhash": h.prev_hash[::-1].hex(),
        "bits": f"{h.bits:08x}",
        "curtime": h.time,
        "coinbasevalue": block.transactions[0].outputs[0].value,
        "transactions": [{"data": tx.serialize().hex(), "txid": tx.txid_hex()} for tx in txs],
        "default_witness_commitment": "6a24aa21a9ed" + commitment.hex(),
    }


def test_template_to_block() -> None:
    template = parse_template(_gbt())
    solo = build_solo_work(template, PAYOUT, "7")
    work = solo.work
    assert work.share_target == Block.parse(load_block_bytes("mainnet-482683")).header.target()
    en2 = bytes(range(8))
    header = work.job.header(b"", en2, template.curtime, 12345)
    share = FoundShare(work, en2, template.curtime, 12345, work.job.version, sha256d(header), 0.0)
    block = Block.parse(solo.block(share))
    assert block.header.serialize() == header
    assert block.compute_merkle_root() == block.header.merkle_root
    assert block.witness_commitment_in_coinbase() == block.compute_witness_commitment()
    assert block.transactions[0].inputs[0].witness == (WITNESS_RESERVED_VALUE,)
    assert len(block.transactions) == 12
    coinbase = block.transactions[0]
    assert bip34_height(coinbase.inputs[0].script_sig) == 482683
    assert COINBASE_TAG in coinbase.inputs[0].script_sig
    assert en2 in coinbase.inputs[0].script_sig
    assert coinbase.outputs[0].script_pubkey == PAYOUT
    assert coinbase.outputs[0].value == template.coinbase_value


def test_a_share_that_does_not_rebuild_is_refused() -> None:
    template = parse_template(_gbt())
    solo = build_solo_work(template, PAYOUT, "1")
    share = FoundShare(
        solo.work, bytes(8), template.curtime, 1, solo.work.job.version, bytes(32), 0.0
    )
    with pytest.raises(Exception, match="does not rebuild"):
        solo.block(share)


@pytest.mark.parametrize(
    ("key", "value"),
    [("bits", "zz"), ("height", None), ("default_witness_commitment", "6a00")],
)
def test_bad_templates_name_the_problem(key: str, value: object) -> None:
    gbt = _gbt()
    gbt[key] = value
    with pytest.raises(NodeError, match="unusable block template"):
        parse_template(gbt)
