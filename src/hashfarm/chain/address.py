"""Addresses <-> scriptPubKeys: P2PKH, P2SH (Base58Check) and segwit v0..v16 (BIP 173/350).

The checksum codecs come from `base58-bech32` (btclib's typed, stdlib-only codecs; see
docs/chain.md for why); the segwit rules of BIP 173/350 (witness version, program length,
bech32 vs bech32m per version) and the network checks are applied here.
"""

from __future__ import annotations

from base58_bech32.base58 import b58decode_check, b58encode_check
from base58_bech32.bech32 import (
    BECH32_1_CONST,
    BECH32_M_CONST,
    bech32_decode,
    bech32_encode,
    convertbits,
)
from base58_bech32.exceptions import Base58Bech32Exception

from hashfarm.chain.networks import NETWORKS, Network, get_network
from hashfarm.errors import AddressError

__all__ = ["address_to_script", "classify_script", "script_to_address", "witness_program"]

_MAX_SEGWIT_LENGTH = 90  # BIP 173's limit on a segwit address
_OP_DUP, _OP_HASH160, _OP_EQUALVERIFY, _OP_CHECKSIG, _OP_EQUAL = 0x76, 0xA9, 0x88, 0xAC, 0x87
_OP_RETURN = 0x6A
_BECH32_CHARS = set("qpzry9x8gf2tvdw0s3jn54khce6mua7l")


def _p2pkh(h: bytes) -> bytes:
    return bytes((_OP_DUP, _OP_HASH160, 20)) + h + bytes((_OP_EQUALVERIFY, _OP_CHECKSIG))


def _p2sh(h: bytes) -> bytes:
    return bytes((_OP_HASH160, 20)) + h + bytes((_OP_EQUAL,))


def _segwit_script(version: int, program: bytes) -> bytes:
    op = 0 if version == 0 else 0x50 + version
    return bytes((op, len(program))) + program


def _networks_with(attr: str, value: object) -> str:
    names = [n.name for n in NETWORKS.values() if value in getattr(n, attr)]
    return "/".join(names) or "no known network"


def _decode_segwit(address: str, hrp: str, network: Network) -> bytes:
    try:
        got_hrp, data, const = bech32_decode(address, limit=_MAX_SEGWIT_LENGTH)
    except Base58Bech32Exception as exc:
        raise AddressError(f"invalid bech32 address {address!r}: {exc}") from exc
    if got_hrp not in network.bech32_hrps:
        owner = _networks_with("bech32_hrps", got_hrp)
        raise AddressError(
            f"address {address!r} is for {owner} (hrp {got_hrp!r}), "
            f"not {network.name} (hrp {'/'.join(network.bech32_hrps)})"
        )
    if not data or data[0] > 16:
        raise AddressError(f"address {address!r} has an invalid witness version")
    version = data[0]
    try:
        program = bytes(convertbits(data[1:], 5, 8, False))
    except Base58Bech32Exception as exc:
        raise AddressError(f"address {address!r} has invalid padding: {exc}") from exc
    _check_program(address, version, program, const)
    return _segwit_script(version, program)


def _check_program(address: str, version: int, program: bytes, const: int) -> None:
    if not 2 <= len(program) <= 40:
        raise AddressError(f"address {address!r}: witness program of {len(program)} bytes")
    if version == 0 and len(program) not in (20, 32):
        raise AddressError(f"address {address!r}: v0 program must be 20 or 32 bytes")
    expected = BECH32_1_CONST if version == 0 else BECH32_M_CONST
    if const != expected:
        want = "bech32" if version == 0 else "bech32m (BIP 350)"
        raise AddressError(f"address {address!r}: witness v{version} must use {want} checksum")


def _decode_base58(address: str, network: Network, hrp: str) -> bytes:
    try:
        payload = b58decode_check(address)
    except Base58Bech32Exception as exc:
        if hrp and set(address[len(hrp) + 1 :].lower()) <= _BECH32_CHARS:
            raise AddressError(
                f"address {address!r} has an unknown human-readable part {hrp!r}; "
                f"{network.name} uses {'/'.join(network.bech32_hrps)}"
            ) from None
        raise AddressError(f"invalid address {address!r}: {exc}") from exc
    if len(payload) != 21:
        raise AddressError(f"address {address!r} decodes to {len(payload)} bytes, expected 21")
    prefix, h = payload[0], payload[1:]
    if prefix in network.p2pkh_prefixes:
        return _p2pkh(h)
    if prefix in network.p2sh_prefixes:
        return _p2sh(h)
    owner = _networks_with("p2pkh_prefixes", prefix)
    if owner == "no known network":
        owner = _networks_with("p2sh_prefixes", prefix)
    raise AddressError(
        f"address {address!r} has version byte {prefix:#04x} of {owner}, not {network.name}"
    )


def address_to_script(address: str, network: Network | str = "mainnet") -> bytes:
    """The scriptPubKey paying `address` on `network`; AddressError says what is wrong."""
    net = get_network(network)
    address = address.strip()
    if not address:
        raise AddressError("empty address")
    sep = address.rfind("1")
    hrp = address[:sep].lower() if sep > 0 else ""
    known_hrps = {h for n in NETWORKS.values() for h in n.bech32_hrps}
    if hrp in known_hrps:
        return _decode_segwit(address, hrp, net)
    return _decode_base58(address, net, hrp)


def witness_program(script: bytes) -> tuple[int, bytes] | None:
    """(version, program) when `script` is a segwit output script, else None."""
    if not 4 <= len(script) <= 42 or script[1] != len(script) - 2:
        return None
    op = script[0]
    if op == 0:
        return 0, script[2:]
    if 0x51 <= op <= 0x60:
        return op - 0x50, script[2:]
    return None


def classify_script(script: bytes) -> str:
    """Output type name: p2pkh, p2sh, p2wpkh, p2wsh, p2tr, witness_vN, p2pk, op_return, ..."""
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return "p2pkh"
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22] == _OP_EQUAL:
        return "p2sh"
    wp = witness_program(script)
    if wp is not None:
        version, program = wp
        named = {(0, 20): "p2wpkh", (0, 32): "p2wsh", (1, 32): "p2tr"}
        return named.get((version, len(program)), f"witness_v{version}")
    if script[:1] == bytes((_OP_RETURN,)):
        return "op_return"
    if len(script) in (35, 67) and script[0] == len(script) - 2 and script[-1] == _OP_CHECKSIG:
        return "p2pk"
    return "nonstandard"


def script_to_address(script: bytes, network: Network | str = "mainnet") -> str | None:
    """The address `network` writes for `script`, or None when it has no address form."""
    net = get_network(network)
    kind = classify_script(script)
    if kind == "p2pkh":
        return b58encode_check(bytes((net.p2pkh_prefix,)) + script[3:23]).decode()
    if kind == "p2sh":
        return b58encode_check(bytes((net.p2sh_prefix,)) + script[2:22]).decode()
    wp = witness_program(script)
    if wp is None:
        return None
    version, program = wp
    if (version == 0 and len(program) not in (20, 32)) or len(program) > 40:
        return None
    data = [version, *convertbits(program, 8, 5)]
    m = BECH32_1_CONST if version == 0 else BECH32_M_CONST
    return bech32_encode(net.bech32_hrp, data, m=m, limit=_MAX_SEGWIT_LENGTH).decode()
