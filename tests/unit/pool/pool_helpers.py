"""Jobs built from real mainnet blocks of the fixtures (helpers for the pool unit tests)."""

from __future__ import annotations

from dataclasses import replace

from hashfarm.chain.block import Block
from hashfarm.chain.coinbase import CoinbaseParts, split_coinbase
from hashfarm.node.template import Template, TemplateTx
from hashfarm.pool.jobs import PoolJob
from hashfarm.stratum import messages
from hashfarm.stratum.codec import encode
from hashfarm.stratum.work import make_job

EN1_SIZE, EN2_SIZE = 4, 8


def slot_offset(block: Block) -> int:
    """Where a 12-byte extranonce slot sits in the real coinbase: right after the height push."""
    script_sig = block.transactions[0].inputs[0].script_sig
    script_len_size = 1 if len(script_sig) < 0xFD else 3
    return 4 + 1 + 36 + script_len_size + 1 + script_sig[0]


def template_of(block: Block) -> Template:
    """The template the block's miner would have worked on (fees unknown: 0)."""
    h = block.header
    txs = tuple(TemplateTx(tx.serialize(), tx.txid(), 0) for tx in block.transactions[1:])
    return Template(
        height=block.height_from_coinbase(),
        version=h.version,
        prev_hash=h.prev_hash,
        bits=h.bits,
        curtime=h.time - 60,
        mintime=h.time - 3600,
        coinbase_value=block.transactions[0].total_out(),
        transactions=txs,
        witness_commitment=block.witness_commitment_in_coinbase(),
        coinbase_aux=b"",
        longpollid=None,
    )


def job_of(block: Block, seq: int = 1, *, clean: bool = True) -> tuple[PoolJob, bytes]:
    """A PoolJob whose coinbase is the block's own, and the extranonce its miner used."""
    raw_cb = block.transactions[0].serialize(witness=False)
    offset = slot_offset(block)
    coinb1, coinb2 = split_coinbase(raw_cb, offset, EN1_SIZE + EN2_SIZE)
    extranonce = raw_cb[offset : offset + EN1_SIZE + EN2_SIZE]
    tpl = template_of(block)
    parts = CoinbaseParts(coinb1, coinb2, EN1_SIZE + EN2_SIZE, tpl.witness_commitment is not None)
    work = make_job(
        f"{seq:x}",
        tpl.prev_hash,
        coinb1,
        coinb2,
        tpl.txids,
        tpl.version,
        tpl.bits,
        tpl.curtime,
        clean,
    )
    script = block.transactions[0].outputs[0].script_pubkey
    job = PoolJob(seq, 1, work, tpl, parts, script, encode(messages.notify(work)))
    return job, extranonce


def with_time(job: PoolJob, curtime: int) -> PoolJob:
    """The same job with a different template curtime (for ntime checks)."""
    return replace(job, work=replace(job.work, time=curtime))
