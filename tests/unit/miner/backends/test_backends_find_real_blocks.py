"""Every backend re-mines the real mainnet blocks from the job a pool would send.

For each fixture block the coinbase is cut around an 8-byte extranonce right after the BIP 34
height push, the job goes through `mining.notify` params and back, and the header prefix is
rebuilt from coinb1 + extranonce1 + extranonce2 + coinb2 and the merkle branch. Scanning a
window around the block's nonce against the target of its bits must find exactly that nonce,
and a window beside it must find nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hashfarm.chain import Block, bip34_height_push, bits_to_target, encode_compact_size
from hashfarm.miner.backends import Backend, get_backend
from hashfarm.stratum.work import Job, make_job
from realdata import FIXTURE_BLOCKS

EXTRANONCE1_SIZE = 4
EXTRANONCE2_SIZE = 4
# Window sizes per backend: wide enough to mean something, short enough for a unit test.
WINDOWS = {"hashlib": 20_000, "numba": 1 << 20}


@pytest.fixture(scope="module", params=["hashlib", "numba"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    backend = get_backend(request.param)
    yield backend
    backend.close()


def _job_and_extranonces(block: Block) -> tuple[Job, bytes, bytes]:
    """The notify fields of `block` and the extranonce1/extranonce2 its miner used."""
    raw = block.coinbase.serialize(witness=False)
    script = block.coinbase.inputs[0].script_sig
    offset = 4 + 1 + 36 + len(encode_compact_size(len(script)))
    offset += len(bip34_height_push(block.height_from_coinbase()))
    size = EXTRANONCE1_SIZE + EXTRANONCE2_SIZE
    extranonce = raw[offset : offset + size]
    h = block.header
    txids = [tx.txid() for tx in block.transactions[1:]]
    job = make_job("1", h.prev_hash, raw[:offset], raw[offset + size :], txids, h.version,
                   h.bits, h.time, True)  # fmt: skip
    wire_job = Job.from_params(job.to_params())  # what the miner decodes from the socket
    return wire_job, extranonce[:EXTRANONCE1_SIZE], extranonce[EXTRANONCE1_SIZE:]


def _header76(path: Path) -> tuple[bytes, int, int]:
    block = Block.parse(path.read_bytes())
    job, extranonce1, extranonce2 = _job_and_extranonces(block)
    header = job.header(extranonce1, extranonce2, job.time, nonce=0)
    assert header[:76] == block.header.serialize()[:76]
    return header[:76], block.header.nonce, bits_to_target(job.bits)


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_backend_finds_the_real_nonce(backend: Backend, path: Path) -> None:
    header76, nonce, target = _header76(path)
    window = WINDOWS[backend.name]
    start = max(0, nonce - window // 3)
    assert backend.scan(header76, start, window, target) == [nonce]


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_backend_finds_nothing_beside_the_real_nonce(backend: Backend, path: Path) -> None:
    header76, nonce, target = _header76(path)
    window = WINDOWS[backend.name]
    assert backend.scan(header76, nonce + 1, window, target) == []
    assert backend.scan(header76, nonce - window, window, target) == []
    assert backend.scan(header76, nonce, 1, target) == [nonce]


@pytest.mark.parametrize("path", FIXTURE_BLOCKS[:1], ids=lambda p: p.stem)
def test_threads_find_the_real_nonce(path: Path) -> None:
    header76, nonce, target = _header76(path)
    for name in ("numba", "hashlib"):
        backend = get_backend(name, threads=2)
        try:
            assert backend.scan(header76, nonce - 5_000, 10_001, target) == [nonce]
        finally:
            backend.close()
