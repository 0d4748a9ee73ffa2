"""Every mining.notify field's byte order, checked against real mainnet blocks.

The test reads the encoded notify line as a miner would (plain JSON, no project code), builds
the header with its own byte-order rules, and must get the block's real header and hash.
"""

from __future__ import annotations

import hashlib
import json

from pool_helpers import job_of

from hashfarm.chain.block import Block


def dsha(b: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def miner_header(line: bytes, extranonce: bytes, nonce: int) -> bytes:
    """A miner's view: cgminer/ESP-Miner byte order, written out independently."""
    msg = json.loads(line)
    assert msg["method"] == "mining.notify"
    assert msg["id"] is None
    _, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = msg["params"]
    assert clean is True
    root = dsha(bytes.fromhex(coinb1) + extranonce + bytes.fromhex(coinb2))
    for sibling in branch:
        root = dsha(root + bytes.fromhex(sibling))
    prev = b"".join(bytes.fromhex(prevhash)[i : i + 4][::-1] for i in range(0, 32, 4))
    return (
        bytes.fromhex(version)[::-1]
        + prev
        + root
        + bytes.fromhex(ntime)[::-1]
        + bytes.fromhex(nbits)[::-1]
        + nonce.to_bytes(4, "little")
    )


def test_notify_rebuilds_the_real_header(real_block: Block) -> None:
    job, extranonce = job_of(real_block)
    assert job.notify_line.endswith(b"\n")
    header = miner_header(job.notify_line, extranonce, real_block.header.nonce)
    # ntime differs (the job carries curtime); put the block's own time back to compare
    header = header[:68] + real_block.header.time.to_bytes(4, "little") + header[72:]
    assert header == real_block.header.serialize()
    assert dsha(header) == real_block.hash()


def test_notify_fields_as_text(small_block: Block) -> None:
    job, _ = job_of(small_block)
    params = json.loads(job.notify_line)["params"]
    # block 482683: version 0x20000002, bits 18013ce9 as big-endian hex
    assert params[5] == "20000002"
    assert params[6] == "18013ce9"
    prev_display = "0000000000000000004f8568aa0bc28c7ca94785da07a49272f7124516aaac87"
    words = [params[1][i : i + 8] for i in range(0, 64, 8)]
    # each 4-byte word byte-swapped from internal order == display order read word-reversed
    assert "".join(reversed(words)) == prev_display
    assert len(params[4]) == 4  # 12 transactions: a 4-deep branch
    assert params[0] == job.job_id
