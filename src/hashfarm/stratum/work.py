"""A Stratum job and the byte order of every `mining.notify` field, in both directions.

`mining.notify` params, as cgminer, bfgminer, ckpool and ESP-Miner agree on them:

    [job_id, prevhash, coinb1, coinb2, merkle_branch, version, nbits, ntime, clean_jobs]

- `prevhash`: the previous block hash in internal (header) order, cut into eight 4-byte
  words and each word byte-swapped. It comes from cgminer treating the header as big-endian
  32-bit words; every miner since undoes it the same way.
- `version`, `nbits`, `ntime`: the integer as 8 big-endian hex digits (the header stores
  them little-endian). `mining.submit`'s ntime, nonce and version bits use the same form.
- `coinb1`, `coinb2`: hex of the coinbase's non-witness serialization before and after the
  extranonce (extranonce1 from the pool, then extranonce2 from the miner).
- `merkle_branch`: hex of the sibling hashes, internal order, from the coinbase up:
  root = sha256d(... sha256d(sha256d(coinbase) + b0) + b1 ...).

`Job` holds the fields as bytes and ints; `to_params`/`from_params` are the wire form and
`header` rebuilds the 80-byte header a miner hashes, so pool and miner share one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.merkle import coinbase_branch, root_from_branch
from hashfarm.errors import StratumError

U32_MAX = 0xFFFFFFFF
VERSION_ROLLING_MASK = 0x1FFFE000
"""BIP 320's general-purpose version bits (13-28), the mask ASICs roll by default."""


def swap_words(data: bytes) -> bytes:
    """Byte-swap every 4-byte word (the prevhash transform; it is its own inverse)."""
    if len(data) % 4:
        raise StratumError(f"length {len(data)} is not a multiple of 4")
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def prevhash_to_stratum(prev_hash: bytes) -> str:
    """Internal-order previous block hash -> notify's word-swapped hex."""
    if len(prev_hash) != 32:
        raise StratumError(f"prev hash must be 32 bytes, got {len(prev_hash)}")
    return swap_words(prev_hash).hex()


def prevhash_from_stratum(value: Any) -> bytes:
    """Notify's word-swapped hex -> internal-order previous block hash."""
    return swap_words(hex_bytes(value, "prevhash", 32))


def u32_hex(value: int) -> str:
    """An unsigned 32-bit field as Stratum writes it: 8 big-endian hex digits."""
    if not 0 <= value <= U32_MAX:
        raise StratumError(f"{value} does not fit in 32 bits")
    return f"{value:08x}"


def parse_u32_hex(value: Any, name: str) -> int:
    """Read 8 big-endian hex digits (ntime, nonce, nbits, version) into an int."""
    if not isinstance(value, str) or len(value) != 8:
        raise StratumError(f"{name} must be 8 hex digits, got {value!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise StratumError(f"{name} is not hex: {value!r}") from None


def hex_bytes(value: Any, name: str, size: int | None = None) -> bytes:
    """Decode a hex string field, optionally of an exact byte length."""
    if not isinstance(value, str):
        raise StratumError(f"{name} must be a hex string, got {type(value).__name__}")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise StratumError(f"{name} is not hex: {value[:80]!r}") from None
    if size is not None and len(data) != size:
        raise StratumError(f"{name} must be {size} bytes, got {len(data)}")
    return data


def apply_version_bits(job_version: int, version_bits: int, mask: int) -> int:
    """The header version for a rolled share (BIP 310): the job's bits outside the mask,
    the submitted bits inside it."""
    return (job_version & ~mask & U32_MAX) | (version_bits & mask)


def merkle_root_from_coinbase(coinbase: bytes, branch: Sequence[bytes]) -> bytes:
    """The header's merkle root from a non-witness coinbase and the notify branch."""
    return root_from_branch(sha256d(coinbase), list(branch), 0)


def serialize_header(
    version: int, prev_hash: bytes, merkle_root: bytes, time: int, bits: int, nonce: int
) -> bytes:
    """The 80-byte header from its fields (integers little-endian, hashes internal order)."""
    return (
        (version & U32_MAX).to_bytes(4, "little")
        + prev_hash
        + merkle_root
        + time.to_bytes(4, "little")
        + bits.to_bytes(4, "little")
        + nonce.to_bytes(4, "little")
    )


@dataclass(frozen=True)
class Job:
    """One `mining.notify`: everything a miner needs to build headers, in native types."""

    job_id: str
    prev_hash: bytes  # internal order
    coinb1: bytes
    coinb2: bytes
    merkle_branch: tuple[bytes, ...]  # internal order, coinbase's sibling first
    version: int
    bits: int
    time: int
    clean_jobs: bool

    def to_params(self) -> list[Any]:
        """The `mining.notify` params list."""
        return [
            self.job_id,
            prevhash_to_stratum(self.prev_hash),
            self.coinb1.hex(),
            self.coinb2.hex(),
            [h.hex() for h in self.merkle_branch],
            u32_hex(self.version & U32_MAX),
            u32_hex(self.bits),
            u32_hex(self.time),
            self.clean_jobs,
        ]

    @classmethod
    def from_params(cls, params: Sequence[Any]) -> Job:
        """Parse `mining.notify` params; raises StratumError naming the bad field."""
        if len(params) < 9:
            raise StratumError(f"mining.notify needs 9 params, got {len(params)}")
        job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = params[:9]
        if not isinstance(job_id, str | int) or isinstance(job_id, bool):
            raise StratumError(f"job_id must be a string, got {job_id!r}")
        if not isinstance(branch, list):
            raise StratumError("merkle_branch must be a list of hex hashes")
        return cls(
            job_id=str(job_id),
            prev_hash=prevhash_from_stratum(prevhash),
            coinb1=hex_bytes(coinb1, "coinb1"),
            coinb2=hex_bytes(coinb2, "coinb2"),
            merkle_branch=tuple(hex_bytes(h, "merkle_branch", 32) for h in branch),
            version=parse_u32_hex(version, "version"),
            bits=parse_u32_hex(nbits, "nbits"),
            time=parse_u32_hex(ntime, "ntime"),
            clean_jobs=bool(clean),
        )

    def coinbase(self, extranonce1: bytes, extranonce2: bytes) -> bytes:
        """The non-witness coinbase transaction for one extranonce."""
        return self.coinb1 + extranonce1 + extranonce2 + self.coinb2

    def merkle_root(self, extranonce1: bytes, extranonce2: bytes) -> bytes:
        """The header's merkle root for one extranonce."""
        return merkle_root_from_coinbase(
            self.coinbase(extranonce1, extranonce2), self.merkle_branch
        )

    def header(
        self,
        extranonce1: bytes,
        extranonce2: bytes,
        ntime: int,
        nonce: int,
        version: int | None = None,
    ) -> bytes:
        """The 80-byte header for a share (version defaults to the job's)."""
        return build_header(self, extranonce1, extranonce2, ntime, nonce, version)


def build_header(
    job: Job,
    extranonce1: bytes,
    extranonce2: bytes,
    ntime: int,
    nonce: int,
    version: int | None = None,
) -> bytes:
    """The 80-byte header a share claims to have hashed."""
    root = job.merkle_root(extranonce1, extranonce2)
    full_version = job.version if version is None else version
    return serialize_header(full_version, job.prev_hash, root, ntime, job.bits, nonce)


def make_job(
    job_id: str,
    prev_hash: bytes,
    coinb1: bytes,
    coinb2: bytes,
    txids: Sequence[bytes],
    version: int,
    bits: int,
    time: int,
    clean_jobs: bool,
) -> Job:
    """Template -> job: the notify fields for a block whose non-coinbase txids are `txids`
    (internal order, block order) and whose coinbase is split into coinb1/coinb2."""
    if len(prev_hash) != 32:
        raise StratumError(f"prev hash must be 32 bytes, got {len(prev_hash)}")
    branch = tuple(coinbase_branch(list(txids)))
    return Job(job_id, prev_hash, coinb1, coinb2, branch, version, bits, time, clean_jobs)
