"""Base58 and Base58Check, the encoding of P2PKH and P2SH addresses.

Base58 writes a big-endian number in the 58-character alphabet below (no 0, O, I or l), with
one '1' per leading zero byte; Base58Check appends the first 4 bytes of sha256d(payload).
Checked in tests/unit/chain against Bitcoin Core's base58 and key_io vectors.

Decoding is quadratic in the input length, so callers facing strangers pass `max_length`
(addresses are at most 90 characters).
"""

from __future__ import annotations

from hashfarm.chain.hashes import sha256d
from hashfarm.errors import DecodeError

__all__ = ["ALPHABET", "b58decode", "b58decode_check", "b58encode", "b58encode_check"]

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_VALUES = {c: i for i, c in enumerate(ALPHABET)}
_CHECKSUM_SIZE = 4


def b58encode(data: bytes) -> str:
    """`data` in Base58: one '1' per leading zero byte, then the rest as a base-58 number."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    digits = []
    while n:
        n, digit = divmod(n, 58)
        digits.append(ALPHABET[digit])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str, max_length: int | None = None) -> bytes:
    """The bytes `text` encodes; DecodeError names a character outside the alphabet."""
    if max_length is not None and len(text) > max_length:
        raise DecodeError(f"base58: {len(text)} characters, more than {max_length}")
    n = 0
    for pos, char in enumerate(text):
        value = _VALUES.get(char)
        if value is None:
            raise DecodeError(f"base58: invalid character {char!r} at position {pos}")
        n = n * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + n.to_bytes((n.bit_length() + 7) // 8, "big")


def b58encode_check(payload: bytes) -> str:
    """Base58Check: `payload` and the first 4 bytes of its sha256d, in Base58."""
    return b58encode(payload + sha256d(payload)[:_CHECKSUM_SIZE])


def b58decode_check(text: str, max_length: int | None = None) -> bytes:
    """The payload of a Base58Check string, its 4-byte checksum verified and removed."""
    raw = b58decode(text, max_length)
    if len(raw) < _CHECKSUM_SIZE:
        raise DecodeError(f"base58: {len(raw)} bytes, too short for a 4-byte checksum")
    payload, checksum = raw[:-_CHECKSUM_SIZE], raw[-_CHECKSUM_SIZE:]
    if sha256d(payload)[:_CHECKSUM_SIZE] != checksum:
        raise DecodeError("base58: invalid checksum")
    return payload
