"""Addresses <-> scriptPubKeys: P2PKH, P2SH (Base58Check) and segwit v0..v16 (BIP 173/350).

The codecs are ours (`chain.base58`, `chain.bech32`, written from the BIPs and checked against
every BIP 173/350 vector and Bitcoin Core's key_io vectors; docs/chain.md says why no library);
this module maps them to scripts and applies the network checks.
"""

from __future__ import annotations

from hashfarm.chain.base58 import b58decode_check, b58encode_check
from hashfarm.chain.bech32 import CHARSET, MAX_LENGTH, decode_segwit_address, encode_segwit_address
from hashfarm.chain.networks import NETWORKS, Network, get_network
from hashfarm.errors import AddressError, DecodeError

__all__ = ["address_to_script", "classify_script", "script_to_address", "witness_program"]

_OP_DUP, _OP_HASH160, _OP_EQUALVERIFY, _OP_CHECKSIG, _OP_EQUAL = 0x76, 0xA9, 0x88, 0xAC, 0x87
_OP_RETURN = 0x6A
_BECH32_CHARS = set(CHARSET)


def _p2pkh(h: bytes) -> bytes:
    return bytes((_OP_DUP, _OP_HASH160, 20)) + h + bytes((_OP_EQUALVERIFY, _OP_CHECKSIG))


def _p2sh(h: bytes) -> bytes:
    return bytes((_OP_HASH160, 20)) + h + bytes((_OP_EQUAL,))


def _networks_with(attr: str, value: object) -> str:
    names = [n.name for n in NETWORKS.values() if value in getattr(n, attr)]
    return "/".join(names) or "no known network"


def _decode_segwit(address: str, network: Network) -> bytes:
    try:
        decoded = decode_segwit_address(address)
    except DecodeError as exc:
        reason = str(exc).removeprefix("segwit: ").removeprefix("bech32: ")
        raise AddressError(f"invalid segwit address {address!r}: {reason}") from exc
    if decoded.hrp not in network.bech32_hrps:
        owner = _networks_with("bech32_hrps", decoded.hrp)
        raise AddressError(
            f"address {address!r} is for {owner} (hrp {decoded.hrp!r}), "
            f"not {network.name} (hrp {'/'.join(network.bech32_hrps)})"
        )
    return decoded.script()


def _decode_base58(address: str, network: Network, hrp: str) -> bytes:
    try:
        payload = b58decode_check(address)
    except DecodeError as exc:
        if hrp and set(address[len(hrp) + 1 :].lower()) <= _BECH32_CHARS:
            raise AddressError(
                f"address {address!r} has an unknown human-readable part {hrp!r}; "
                f"{network.name} uses {'/'.join(network.bech32_hrps)}"
            ) from None
        reason = str(exc).removeprefix("base58: ")
        raise AddressError(f"invalid address {address!r}: {reason}") from exc
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
    """The scriptPubKey paying `address` on `network`; AddressError says what is wrong.

    Input longer than any address (BIP 173's 90 characters) is refused before decoding, so a
    stranger's long worker name costs nothing (Base58 decoding is quadratic)."""
    net = get_network(network)
    address = address.strip()
    if not address:
        raise AddressError("empty address")
    if len(address) > MAX_LENGTH:
        raise AddressError(
            f"address of {len(address)} characters: no Bitcoin address is longer than {MAX_LENGTH}"
        )
    sep = address.rfind("1")
    hrp = address[:sep].lower() if sep > 0 else ""
    known_hrps = {h for n in NETWORKS.values() for h in n.bech32_hrps}
    if hrp in known_hrps:
        return _decode_segwit(address, net)
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
        return b58encode_check(bytes((net.p2pkh_prefix,)) + script[3:23])
    if kind == "p2sh":
        return b58encode_check(bytes((net.p2sh_prefix,)) + script[2:22])
    wp = witness_program(script)
    if wp is None:
        return None
    version, program = wp
    if (version == 0 and len(program) not in (20, 32)) or len(program) > 40:
        return None
    return encode_segwit_address(net.bech32_hrp, version, program)
