"""Our Base58Check and Bech32/Bech32m codecs: Core's vectors, error detection, round trips.

The BIP 173/350 vectors themselves run in test_address.py (checksum level and segwit level).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashfarm.chain import address_to_script, script_to_address
from hashfarm.chain.base58 import (
    ALPHABET,
    b58decode,
    b58decode_check,
    b58encode,
    b58encode_check,
)
from hashfarm.chain.bech32 import (
    CHARSET,
    Encoding,
    bech32_decode,
    bech32_encode,
    convertbits,
    decode_segwit_address,
    encode_segwit_address,
)
from hashfarm.chain.networks import NETWORKS
from hashfarm.errors import AddressError, DecodeError
from realdata import FIXTURES_DIR

# Bitcoin Core src/test/data/base58_encode_decode.json (hex, base58), copied as data.
CORE_BASE58 = json.loads((FIXTURES_DIR / "core" / "base58_encode_decode.json").read_text())


@pytest.mark.parametrize(("hex_data", "text"), CORE_BASE58)
def test_core_base58_vectors(hex_data: str, text: str) -> None:
    data = bytes.fromhex(hex_data)
    assert b58encode(data) == text
    assert b58decode(text) == data


@pytest.mark.parametrize("text", ["0", "O", "I", "l", " 2g", "2g ", "2\tg", "é", "3SEo3LWLoPntC\0"])
def test_base58_refuses_characters_outside_the_alphabet(text: str) -> None:
    with pytest.raises(DecodeError, match="invalid character"):
        b58decode(text)


def test_base58_length_limit_is_checked_before_decoding() -> None:
    with pytest.raises(DecodeError, match="100001 characters, more than 90"):
        b58decode("z" * 100_001, max_length=90)


def test_base58check_catches_every_single_character_substitution() -> None:
    """A mistyped character in a real address (Core key_io) never yields a payload."""
    address = "1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo"
    assert b58decode_check(address).hex() == "00a31c06bd463e3923bc1aadbde48b16976c080717"
    for pos, original in enumerate(address):
        for char in ALPHABET.replace(original, ""):
            with pytest.raises(DecodeError):
                b58decode_check(address[:pos] + char + address[pos + 1 :])
    with pytest.raises(DecodeError, match="too short"):
        b58decode_check("2g")


def test_bech32_catches_every_single_character_substitution() -> None:
    """BIP 173: any error in up to 4 characters is detected; check all single ones on a real
    P2WSH and P2TR address (Core key_io), including the hrp."""
    for address in (
        "bc1qyucykdlhp62tezs0hagqury402qwhk589q80tqs5myh3rxq34nwqhkdhv7",
        "bc1p83n3au0rjylefxq2nc2xh2y4jzz4pm6zxj4mw5pagdjjr2a9f36s6jjnnu",
    ):
        decode_segwit_address(address)
        for pos in range(len(address)):
            if address[pos] == "1":
                continue
            alphabet = CHARSET if pos > 2 else "abcdefghijklmnopqrstuvwxyz"
            for char in alphabet.replace(address[pos], ""):
                mutated = address[:pos] + char + address[pos + 1 :]
                with pytest.raises(DecodeError):
                    bech32_decode(mutated)


def test_bech32_encode_refuses_what_it_cannot_write() -> None:
    with pytest.raises(DecodeError, match="5-bit"):
        bech32_encode("bc", [32], Encoding.BECH32)
    with pytest.raises(DecodeError, match="human-readable"):
        bech32_encode("", [0], Encoding.BECH32)
    with pytest.raises(DecodeError, match="more than 90"):
        bech32_encode("bc", [0] * 82, Encoding.BECH32)
    with pytest.raises(DecodeError, match="v0 program must be 20 or 32"):
        encode_segwit_address("bc", 0, bytes(21))
    with pytest.raises(DecodeError, match="version 17"):
        encode_segwit_address("bc", 17, bytes(32))


@given(st.binary(max_size=80))
def test_base58_round_trip(data: bytes) -> None:
    text = b58encode(data)
    assert b58decode(text) == data
    assert b58decode_check(b58encode_check(data)) == data
    assert len(text) - len(text.lstrip("1")) == len(data) - len(data.lstrip(b"\0"))


@given(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20),
    st.lists(st.integers(0, 31), max_size=60),
    st.sampled_from(Encoding),
)
def test_bech32_round_trip(hrp: str, data: list[int], encoding: Encoding) -> None:
    if len(hrp) + 1 + len(data) + 6 > 90:
        return
    text = bech32_encode(hrp, data, encoding)
    assert bech32_decode(text) == (hrp, data, encoding)
    assert bech32_decode(text.upper()) == (hrp, data, encoding)
    other = Encoding.BECH32M if encoding == Encoding.BECH32 else Encoding.BECH32
    assert bech32_decode(text)[2] != other  # BIP 350: never valid as both


@given(st.binary(max_size=64))
def test_convertbits_round_trip(data: bytes) -> None:
    five = convertbits(data, 8, 5, True)
    assert len(five) == (len(data) * 8 + 4) // 5
    assert bytes(convertbits(five, 5, 8, False)) == data


v0_programs = st.sampled_from([20, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
witness_programs = st.one_of(
    st.tuples(st.just(0), v0_programs),
    st.tuples(st.integers(1, 16), st.binary(min_size=2, max_size=40)),
)


@given(witness_programs, st.sampled_from(sorted(NETWORKS)))
def test_segwit_scripts_round_trip_on_every_network(
    version_program: tuple[int, bytes], network: str
) -> None:
    version, program = version_program
    script = bytes((0 if version == 0 else 0x50 + version, len(program))) + program
    address = script_to_address(script, network)
    assert address is not None
    assert address_to_script(address, network) == script
    assert address_to_script(address.upper(), network) == script
    decoded = decode_segwit_address(address)
    assert (decoded.version, decoded.program) == (version, program)


@given(st.binary(min_size=20, max_size=20), st.booleans(), st.sampled_from(sorted(NETWORKS)))
def test_base58_scripts_round_trip_on_every_network(h: bytes, p2sh: bool, network: str) -> None:
    script = (
        bytes.fromhex("a914") + h + b"\x87"
        if p2sh
        else bytes.fromhex("76a914") + h + bytes.fromhex("88ac")
    )
    address = script_to_address(script, network)
    assert address is not None
    assert address_to_script(address, network) == script


near_addresses = st.builds(
    lambda hrp, body: hrp + body,
    st.sampled_from(["bc1", "BC1", "tb1", "bcrt1", "rb1", "1", "3", "m", "2", "", "bc1q", "bc1p"]),
    st.text(CHARSET + ALPHABET + "1 \t\x00\x7fé", max_size=100),
)


@given(st.one_of(st.text(max_size=200), near_addresses), st.sampled_from(sorted(NETWORKS)))
def test_any_text_is_a_script_or_an_address_error(text: str, network: str) -> None:
    """Account names come from strangers: whatever they send, the answer is a script or an
    AddressError, never another exception."""
    try:
        script = address_to_script(text, network)
    except AddressError:
        return
    assert script_to_address(script, network) is not None
