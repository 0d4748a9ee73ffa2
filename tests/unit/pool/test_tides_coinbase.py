"""Many-output coinbases built by the pool's job code, judged by Bitcoin Core's engine and
checked inside real mainnet blocks.

* Core (libbitcoinkernel, `make_judge`): the pool's `JobBook` builds a job whose coinbase pays
  500 outputs of every standard type, for an empty block (the first TIDES job at a new tip:
  no witness commitment) and for a template with the witness commitment; the block assembled
  from the job (`pool.blocks.assemble_block`) is accepted.
* Mainnet (tests/fixtures/blocks): a real block becomes a template, the pool builds its job
  with a TIDES coinbase at the byte budget's bound, and the assembled block passes every
  context-free check but proof of work (merkle root over the real transactions, BIP 34
  height, the witness commitment, weight), and its coinbase stays within the budget.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from hashfarm.chain import Block
from hashfarm.chain.block import Block as ChainBlock
from hashfarm.chain.checks import check_block
from hashfarm.chain.coinbase import coinbase_fixed_size
from hashfarm.chain.merkle import witness_commitment, witness_merkle_root
from hashfarm.chain.networks import get_network
from hashfarm.chain.pow import bits_to_target
from hashfarm.chain.tx import TxOut
from hashfarm.node.template import Template
from hashfarm.pool.blocks import assemble_block
from hashfarm.pool.jobs import JobBook, PoolJob
from hashfarm.pool.tides import empty_template, outputs_within_budget
from hashfarm.stratum.work import serialize_header
from nodes import Judge
from realdata import load_block_bytes

GENESIS = bytes.fromhex("0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206")[::-1]
GENESIS_TIME = 1296688602
TAG = b"/hashfarm/"
EN1, EN2 = bytes.fromhex("01020304"), bytes(8)


def scripts(n: int) -> list[bytes]:
    """`n` distinct output scripts cycling through P2WPKH, P2TR, P2PKH, P2SH and P2WSH."""
    out = []
    for i in range(n):
        h = hashlib.sha256(b"payee-%d" % i).digest()
        out.append(
            [
                b"\x00\x14" + h[:20],
                b"\x51\x20" + h,
                b"\x76\xa9\x14" + h[:20] + b"\x88\xac",
                b"\xa9\x14" + h[:20] + b"\x87",
                b"\x00\x20" + h,
            ][i % 5]
        )
    return out


def split(value: int, payees: list[bytes]) -> list[TxOut]:
    """`value` over the payees, the remainder on the first (outputs sum to `value`)."""
    each = value // len(payees)
    outs = [TxOut(each, s) for s in payees]
    outs[0] = TxOut(each + value - each * len(payees), payees[0])
    return outs


def job_for(template: Template, outputs: list[TxOut]) -> PoolJob:
    book = JobBook(lambda value, _s: outputs, tag=TAG, extranonce2_size=8, generations_kept=2)
    book.set_template(template)
    return book.job_for(outputs[0].script_pubkey)


def mined(job: PoolJob) -> bytes:
    """The block of `job` with a nonce meeting its (regtest) target."""
    root = job.work.merkle_root(EN1, EN2)
    target = bits_to_target(job.template.bits)
    for nonce in range(1 << 16):
        header = serialize_header(
            job.work.version, job.template.prev_hash, root, job.work.time, job.work.bits, nonce
        )
        if (
            int.from_bytes(hashlib.sha256(hashlib.sha256(header).digest()).digest(), "little")
            <= target
        ):
            return assemble_block(job, header, EN1 + EN2)
    raise AssertionError("no nonce found")


def regtest_template(*, commitment: bool) -> Template:
    full = Template(
        height=1,
        version=0x20000000,
        prev_hash=GENESIS,
        bits=0x207FFFFF,
        curtime=GENESIS_TIME + 600,
        mintime=GENESIS_TIME + 1,
        coinbase_value=50 * 10**8,
        transactions=(),
        # a block of the coinbase alone: its witness root is over the coinbase's zero wtxid
        witness_commitment=witness_commitment(witness_merkle_root([])),
        coinbase_aux=b"",
        longpollid=None,
    )
    return full if commitment else empty_template(full, "regtest")


@pytest.mark.parametrize("commitment", [False, True], ids=["empty-block", "with-commitment"])
def test_core_accepts_a_block_whose_coinbase_pays_500_outputs(
    make_judge: Callable[[], Judge], commitment: bool
) -> None:
    template = regtest_template(commitment=commitment)
    outputs = split(template.coinbase_value, scripts(500))
    raw = mined(job_for(template, outputs))
    block = Block.parse(raw)
    coinbase = block.transactions[0]
    assert [(o.value, o.script_pubkey) for o in coinbase.outputs[:500]] == [
        (o.value, o.script_pubkey) for o in outputs
    ]
    assert len(coinbase.outputs) == 500 + commitment
    verdict = make_judge().verdict(raw)
    assert verdict.valid, verdict.reason


def test_core_refuses_a_coinbase_paying_one_satoshi_too_many(
    make_judge: Callable[[], Judge],
) -> None:
    template = regtest_template(commitment=False)
    outputs = split(template.coinbase_value + 1, scripts(500))
    verdict = make_judge().verdict(mined(job_for(template, outputs)))
    assert not verdict.valid
    assert "bad-cb-amount" in (verdict.reason or "")


@pytest.mark.parametrize("name", ["mainnet-481829", "mainnet-482683", "mainnet-383616"])
def test_a_tides_coinbase_in_a_real_mainnet_block_passes_every_check_but_work(name: str) -> None:
    original = ChainBlock.parse(load_block_bytes(name))
    template = Template.from_block(original)
    fixed = coinbase_fixed_size(
        template.height,
        extranonce_size=12,
        tag=TAG,
        witness_commitment=template.witness_commitment,
    )
    budget = 1900  # accounting.coinbase_max_bytes' default
    bound = outputs_within_budget(budget, fixed)
    outputs = split(template.coinbase_value, scripts(bound))
    job = job_for(template, outputs)
    header = serialize_header(
        job.work.version,
        template.prev_hash,
        job.work.merkle_root(EN1, EN2),
        job.work.time,
        job.work.bits,
        0,
    )
    block = ChainBlock.parse(assemble_block(job, header, EN1 + EN2))
    failed = [
        c for c in check_block(block, get_network("mainnet"), template.height) if c.passed is False
    ]
    assert [c.reason for c in failed] == ["high-hash"]  # only the work we did not do
    assert [t.txid() for t in block.transactions[1:]] == [
        t.txid() for t in original.transactions[1:]
    ]
    assert len(job.coinbase.serialize(EN1 + EN2)) <= budget
    coinbase = block.transactions[0]
    assert sum(o.value for o in coinbase.outputs) == template.coinbase_value
    assert len(coinbase.outputs) == bound + (template.witness_commitment is not None)
    # the block's weight grew by the coinbase's growth only
    grown = 4 * (
        len(coinbase.serialize(witness=False))
        - len(original.transactions[0].serialize(witness=False))
    )
    assert block.weight() - original.weight() <= grown + 4 * 3
