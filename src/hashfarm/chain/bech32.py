"""Bech32 (BIP 173) and Bech32m (BIP 350), and the segwit address rules built on them.

Written from the two BIPs' specification text (checksum, character set, case and length rules,
the 5-to-8 bit regrouping, the v0/v1+ checksum split) and checked in tests/unit/chain against
every test vector both BIPs list and Bitcoin Core's key_io address vectors. Payout scripts are
money, so this module is ours: pure, dependency-free, and small enough to read in one sitting
(docs/chain.md says why no third-party codec was taken).

Errors are `DecodeError`s whose message says which rule the input broke.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hashfarm.errors import DecodeError

__all__ = [
    "CHARSET",
    "MAX_LENGTH",
    "Encoding",
    "SegwitAddress",
    "bech32_decode",
    "bech32_encode",
    "convertbits",
    "decode_segwit_address",
    "encode_segwit_address",
]

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"  # BIP 173: value i is written as CHARSET[i]
MAX_LENGTH = 90  # BIP 173: a Bech32 string is at most 90 characters
CHECKSUM_LENGTH = 6  # the last six data characters are the checksum
_VALUES = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)  # BIP 173 BCH code


class Encoding(enum.IntEnum):
    """Which checksum a string carries: the polymod residue each BIP defines."""

    BECH32 = 1  # BIP 173: segwit v0
    BECH32M = 0x2BC830A3  # BIP 350: segwit v1..v16


def _generator_table() -> tuple[int, ...]:
    """XOR of the generator words selected by each 5-bit value: one lookup per character."""
    table = []
    for top in range(32):
        word = 0
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                word ^= gen
        table.append(word)
    return tuple(table)


_GEN_TABLE = _generator_table()


def _polymod(values: Iterable[int]) -> int:
    """The BCH checksum residue of a sequence of 5-bit values (BIP 173's definition)."""
    chk = 1
    for value in values:
        chk = ((chk & 0x1FFFFFF) << 5) ^ value ^ _GEN_TABLE[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    """High bits of each hrp character, a zero, then the low bits (why: BIP 173's footnote)."""
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _checksum(hrp: str, data: Sequence[int], encoding: Encoding) -> list[int]:
    residue = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ encoding
    return [(residue >> 5 * (5 - i)) & 31 for i in range(CHECKSUM_LENGTH)]


def bech32_encode(hrp: str, data: Sequence[int], encoding: Encoding) -> str:
    """The lower-case string of `hrp` and 5-bit `data` with `encoding`'s checksum appended."""
    hrp = hrp.lower()  # encoders must write lower case; the checksum is over the lower form
    if not hrp or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise DecodeError(f"bech32: invalid human-readable part {hrp!r}")
    if any(not 0 <= v < 32 for v in data):
        raise DecodeError("bech32: data values must be 5-bit (0..31)")
    text = hrp + "1" + "".join(CHARSET[v] for v in [*data, *_checksum(hrp, data, encoding)])
    if len(text) > MAX_LENGTH:
        raise DecodeError(f"bech32: {len(text)} characters, more than {MAX_LENGTH}")
    return text


def bech32_decode(text: str, max_length: int = MAX_LENGTH) -> tuple[str, list[int], Encoding]:
    """(hrp in lower case, 5-bit data without the checksum, which checksum it carried).

    Either case is accepted, never a mix; the separator is the last '1'."""
    if len(text) > max_length:
        raise DecodeError(f"bech32: {len(text)} characters, more than {max_length}")
    if not (text.isascii() and text.isprintable()) or " " in text:  # the fast common case
        bad = next(c for c in text if not 33 <= ord(c) <= 126)
        raise DecodeError(f"bech32: character {bad!r} is outside US-ASCII 33..126")
    if text.lower() != text and text.upper() != text:
        raise DecodeError("bech32: mixed upper and lower case")
    text = text.lower()
    sep = text.rfind("1")
    if sep < 0:
        raise DecodeError("bech32: no separator '1'")
    if sep == 0:
        raise DecodeError("bech32: empty human-readable part")
    if len(text) - sep - 1 < CHECKSUM_LENGTH:
        raise DecodeError("bech32: data part shorter than the 6-character checksum")
    hrp, rest = text[:sep], text[sep + 1 :]
    try:
        data = [_VALUES[c] for c in rest]
    except KeyError as exc:
        raise DecodeError(f"bech32: {exc.args[0]!r} is not a bech32 data character") from None
    residue = _polymod(_hrp_expand(hrp) + data)
    if residue not in (Encoding.BECH32, Encoding.BECH32M):
        raise DecodeError("bech32: invalid checksum")
    return hrp, data[:-CHECKSUM_LENGTH], Encoding(residue)


def convertbits(data: Iterable[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    """Regroup `frombits`-bit values into `tobits`-bit ones, most significant bit first.

    With `pad` the last group is filled with zero bits; without it (decoding) leftover bits
    must be fewer than `frombits` and all zero, as BIP 173 requires."""
    acc, bits, out = 0, 0, []  # acc holds the `bits` not yet written
    for value in data:
        if not 0 <= value < (1 << frombits):
            raise DecodeError(f"bech32: value {value} does not fit in {frombits} bits")
        acc, bits = (acc << frombits) | value, bits + frombits
        while bits >= tobits:
            bits -= tobits
            out.append(acc >> bits)
            acc &= (1 << bits) - 1
    if pad:
        if bits:
            out.append(acc << (tobits - bits))
    elif bits >= frombits:
        raise DecodeError(f"bech32: {bits} bits of padding, more than {frombits - 1}")
    elif acc:
        raise DecodeError("bech32: non-zero padding bits")
    return out


@dataclass(frozen=True, slots=True)
class SegwitAddress:
    """A decoded segwit address: its hrp (lower case), witness version and program."""

    hrp: str
    version: int
    program: bytes

    def script(self) -> bytes:
        """The scriptPubKey: OP_0 or OP_1..OP_16 (0x51..0x60), then a push of the program."""
        op = 0 if self.version == 0 else 0x50 + self.version
        return bytes((op, len(self.program))) + self.program


def _check_program(version: int, program: bytes) -> None:
    """BIP 141/173/350: version 0..16, program 2..40 bytes, v0 exactly 20 or 32."""
    if not 0 <= version <= 16:
        raise DecodeError(f"segwit: invalid witness version {version}")
    if not 2 <= len(program) <= 40:
        raise DecodeError(f"segwit: witness program of {len(program)} bytes (must be 2..40)")
    if version == 0 and len(program) not in (20, 32):
        raise DecodeError(f"segwit: v0 program must be 20 or 32 bytes, got {len(program)}")


def encode_segwit_address(hrp: str, version: int, program: bytes) -> str:
    """The address of a witness program: bech32 for v0, bech32m for v1..v16 (BIP 350)."""
    _check_program(version, program)
    encoding = Encoding.BECH32 if version == 0 else Encoding.BECH32M
    return bech32_encode(hrp, [version, *convertbits(program, 8, 5, True)], encoding)


def decode_segwit_address(text: str) -> SegwitAddress:
    """Decode and check a segwit address of any hrp (the caller checks the network)."""
    hrp, data, encoding = bech32_decode(text)
    if not data:
        raise DecodeError("segwit: empty data section (no witness version)")
    version = data[0]
    if version > 16:
        raise DecodeError(f"segwit: invalid witness version {version}")
    program = bytes(convertbits(data[1:], 5, 8, False))
    _check_program(version, program)
    expected = Encoding.BECH32 if version == 0 else Encoding.BECH32M
    if encoding != expected:
        want = "bech32" if version == 0 else "bech32m (BIP 350)"
        raise DecodeError(f"segwit: witness v{version} must use {want} checksum")
    return SegwitAddress(hrp, version, program)
