"""Work units from real mainnet blocks, built the way a miner builds them from a pool's job.

The coinbase is cut around an 8-byte extranonce right after the BIP 34 height push, the job
goes through `mining.notify` params and back, and the header prefix is rebuilt from
coinb1 + extranonce1 + extranonce2 + coinb2 and the merkle branch.
"""

from __future__ import annotations

from pathlib import Path

from hashfarm.chain import Block, bits_to_target
from hashfarm.stratum.work import Job, make_job
from realdata import extranonce_offset

EXTRANONCE1_SIZE = 4
EXTRANONCE2_SIZE = 4


def _job_and_extranonces(block: Block) -> tuple[Job, bytes, bytes]:
    """The notify fields of `block` and the extranonce1/extranonce2 its miner used."""
    raw = block.coinbase.serialize(witness=False)
    offset = extranonce_offset(block)
    size = EXTRANONCE1_SIZE + EXTRANONCE2_SIZE
    extranonce = raw[offset : offset + size]
    h = block.header
    txids = [tx.txid() for tx in block.transactions[1:]]
    job = make_job("1", h.prev_hash, raw[:offset], raw[offset + size :], txids, h.version,
                   h.bits, h.time, True)  # fmt: skip
    wire_job = Job.from_params(job.to_params())  # what the miner decodes from the socket
    return wire_job, extranonce[:EXTRANONCE1_SIZE], extranonce[EXTRANONCE1_SIZE:]


def real_work(path: Path) -> tuple[bytes, int, int]:
    """(header76 rebuilt from the Stratum job, the block's nonce, the target of its bits)."""
    block = Block.parse(path.read_bytes())
    job, extranonce1, extranonce2 = _job_and_extranonces(block)
    header = job.header(extranonce1, extranonce2, job.time, nonce=0)
    assert header[:76] == block.header.serialize()[:76]
    return header[:76], block.header.nonce, bits_to_target(job.bits)
