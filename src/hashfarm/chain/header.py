"""The 80-byte block header."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import bits_to_target
from hashfarm.chain.pow import meets_target as hash_meets_target
from hashfarm.errors import DecodeError

__all__ = ["HEADER_SIZE", "BlockHeader"]

HEADER_SIZE = 80
_HEADER = struct.Struct("<i32s32sIII")


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """A block header; hashes are in internal byte order."""

    version: int  # signed 32-bit; BIP 9 version bits
    prev_hash: bytes  # 32 bytes, internal order
    merkle_root: bytes  # 32 bytes, internal order
    time: int  # unix seconds (u32)
    bits: int  # compact target
    nonce: int  # u32

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> BlockHeader:
        """Parse exactly 80 bytes."""
        if len(data) != HEADER_SIZE:
            raise DecodeError(f"a block header is {HEADER_SIZE} bytes, got {len(data)}")
        return cls(*_HEADER.unpack(data))

    def serialize(self) -> bytes:
        """The 80-byte wire form."""
        return _HEADER.pack(
            self.version, self.prev_hash, self.merkle_root, self.time, self.bits, self.nonce
        )

    def hash(self) -> bytes:
        """Block hash (sha256d of the header), internal byte order."""
        return sha256d(self.serialize())

    def hash_hex(self) -> str:
        """Block hash in display order (as explorers and RPC show it)."""
        return self.hash()[::-1].hex()

    def target(self) -> int:
        """The target encoded by `bits`."""
        return bits_to_target(self.bits)

    def meets_target(self, target: int | None = None) -> bool:
        """True when the hash is <= target (default: the header's own bits)."""
        return hash_meets_target(self.hash(), self.target() if target is None else target)
