"""Notify field byte order, checked by rebuilding real mainnet headers from notify fields."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.header import BlockHeader
from hashfarm.chain.serialize import ByteReader
from hashfarm.chain.tx import Transaction
from hashfarm.errors import StratumError
from hashfarm.stratum import messages
from hashfarm.stratum.codec import decode, encode
from hashfarm.stratum.work import (
    Job,
    apply_version_bits,
    build_header,
    make_job,
    prevhash_from_stratum,
    prevhash_to_stratum,
)
from realdata import load_block_bytes

BLOCKS = {  # file -> display hash (from the fixtures README)
    "mainnet-277647.raw": "0000000000000000054a714e580b16c583701712ab91060e92dbde6eb1e052a8",
    "mainnet-383616.raw": "00000000000000000aab6a2b34e979b09ca185584bd1aecf204f24d150ff55e9",
    "mainnet-482683.raw": "000000000000000000c238240ef6dcb26c37e75e16514e6ffc0aef7eee73e747",
}
EN1_SIZE, EN2_SIZE = 4, 4


def _load(name: str) -> tuple[BlockHeader, list[Transaction]]:
    raw = load_block_bytes(name)
    reader = ByteReader(raw[80:])
    txs = [Transaction.read(reader) for _ in range(reader.read_compact_size())]
    return BlockHeader.parse(raw[:80]), txs


def _job_from_block(header: BlockHeader, txs: list[Transaction]) -> tuple[Job, bytes, bytes]:
    """Split the real coinbase around its last 8 scriptSig bytes, as a pool would."""
    coinbase = txs[0].serialize(witness=False)
    script_end = 4 + 1 + 36 + 1 + len(txs[0].inputs[0].script_sig)  # one input, short script
    cut = script_end - EN1_SIZE - EN2_SIZE
    en1, en2 = coinbase[cut : cut + EN1_SIZE], coinbase[cut + EN1_SIZE : script_end]
    job = make_job(
        "b1",
        header.prev_hash,
        coinbase[:cut],
        coinbase[script_end:],
        [tx.txid() for tx in txs[1:]],
        header.version,
        header.bits,
        header.time,
        True,
    )
    return job, en1, en2


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_notify_fields_rebuild_the_real_header(name: str) -> None:
    header, txs = _load(name)
    job, en1, en2 = _job_from_block(header, txs)
    # Through the wire and back: what a miner receives.
    line = encode(messages.notify(job))
    received = messages.parse_notify(decode(line).params)  # type: ignore[union-attr]
    assert received == job
    rebuilt = build_header(received, en1, en2, header.time, header.nonce)
    assert rebuilt == header.serialize()
    assert sha256d(rebuilt)[::-1].hex() == BLOCKS[name]


def test_notify_field_text_for_block_482683() -> None:
    header, txs = _load("mainnet-482683.raw")
    job, _, _ = _job_from_block(header, txs)
    params = job.to_params()
    # prev 0000000000000000004f8568aa0bc28c7ca94785da07a49272f7124516aaac87 (display):
    # Stratum sends its 4-byte display words in reverse order.
    assert params[1] == ("16aaac8772f71245da07a4927ca94785aa0bc28c004f85680000000000000000")
    assert params[5:] == ["20000002", "18013ce9", f"{1504119737:08x}", True]
    assert len(params[4]) == 4  # 12 transactions: a 4-deep branch
    assert prevhash_from_stratum(params[1]) == header.prev_hash
    assert prevhash_to_stratum(header.prev_hash) == params[1]


def test_submitted_share_hex_maps_onto_the_header() -> None:
    header, txs = _load("mainnet-277647.raw")
    job, en1, en2 = _job_from_block(header, txs)
    share = messages.Submit("w", job.job_id, en2, header.time, header.nonce)
    parsed = messages.parse_submit(list(messages.submit(1, share).params))
    assert job.header(en1, parsed.extranonce2, parsed.ntime, parsed.nonce) == header.serialize()


def test_version_rolled_header() -> None:
    header, txs = _load("mainnet-482683.raw")
    job, en1, en2 = _job_from_block(header, txs)
    mask = 0x1FFFE000
    rolled = apply_version_bits(job.version, 0x00006000, mask)
    assert rolled == 0x20006002
    raw = job.header(en1, en2, header.time, header.nonce, rolled)
    assert raw[:4] == bytes.fromhex("02600020")
    assert raw[4:] == header.serialize()[4:]
    # Bits outside the mask cannot be changed by the miner.
    assert apply_version_bits(0x20000000, 0xFFFFFFFF, mask) == 0x3FFFE000


@pytest.mark.parametrize(
    ("index", "value", "reason"),
    [
        (1, "00" * 31, "prevhash must be 32 bytes"),
        (2, "xyz", "coinb1 is not hex"),
        (4, "ab", "merkle_branch must be a list"),
        (4, ["00" * 31], "merkle_branch must be 32 bytes"),
        (5, "2000000", "version must be 8 hex"),
        (6, 0x1D00FFFF, "nbits must be 8 hex"),
        (0, None, "job_id must be"),
    ],
)
def test_bad_notify_fields_are_named(index: int, value: object, reason: str) -> None:
    header, txs = _load("mainnet-482683.raw")
    params = _job_from_block(header, txs)[0].to_params()
    params[index] = value
    with pytest.raises(StratumError, match=reason):
        Job.from_params(params)
    with pytest.raises(StratumError, match="9 params"):
        Job.from_params(params[:8])


@given(
    prev=st.binary(min_size=32, max_size=32),
    branch=st.lists(st.binary(min_size=32, max_size=32), max_size=13),
    version=st.integers(0, 0xFFFFFFFF),
    bits=st.integers(0, 0xFFFFFFFF),
    time=st.integers(0, 0xFFFFFFFF),
    coinb=st.tuples(st.binary(max_size=64), st.binary(max_size=64)),
    clean=st.booleans(),
)
def test_notify_params_round_trip(
    prev: bytes,
    branch: list[bytes],
    version: int,
    bits: int,
    time: int,
    coinb: tuple[bytes, bytes],
    clean: bool,
) -> None:
    job = Job("x1", prev, coinb[0], coinb[1], tuple(branch), version, bits, time, clean)
    assert Job.from_params(orjson.loads(orjson.dumps(job.to_params()))) == job
    assert prevhash_from_stratum(prevhash_to_stratum(prev)) == prev
