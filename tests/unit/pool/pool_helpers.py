"""Jobs built from real mainnet blocks of the fixtures (helpers for the pool unit tests)."""

from __future__ import annotations

from dataclasses import replace

from hashfarm.chain.block import Block
from hashfarm.chain.coinbase import CoinbaseParts, split_coinbase
from hashfarm.node.template import Template
from hashfarm.pool.jobs import PoolJob
from hashfarm.stratum import messages
from hashfarm.stratum.codec import encode
from hashfarm.stratum.work import make_job
from realdata import extranonce_offset

EN1_SIZE, EN2_SIZE = 4, 8


def template_of(block: Block) -> Template:
    """The template the block's miner would have worked on (fees unknown: 0)."""
    return Template.from_block(block, curtime=block.header.time - 60)


def job_of(block: Block, seq: int = 1, *, clean: bool = True) -> tuple[PoolJob, bytes]:
    """A PoolJob whose coinbase is the block's own, and the extranonce its miner used."""
    raw_cb = block.transactions[0].serialize(witness=False)
    offset = extranonce_offset(block)
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
