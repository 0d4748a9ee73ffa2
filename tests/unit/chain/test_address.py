"""Addresses: BIP 173/350 vectors, Bitcoin Core's key_io vectors, and both regtest flavours."""

# ruff: noqa: E501  (test-vector tables keep one vector per line)

from __future__ import annotations

import pytest

from hashfarm.chain import address_to_script, classify_script, get_network, script_to_address
from hashfarm.chain.bech32 import Encoding, bech32_decode
from hashfarm.errors import AddressError, ChainError, DecodeError

HRP_NETWORK = {"bc": "mainnet", "tb": "testnet", "bcrt": "regtest"}

# BIP 173 (v0 still valid) and BIP 350 valid segwit addresses -> scriptPubKey.
VALID_SEGWIT = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
     "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    ("tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
     "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
     "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
     "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
]  # fmt: skip

# BIP 173 and BIP 350 invalid segwit addresses (reason as the BIPs give it).
INVALID_SEGWIT = [
    ("tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty", "invalid human-readable part"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "invalid checksum"),
    ("BC13W508D6QEJXTDG4Y5R3ZARVARY0C5XW7KN40WF2", "invalid witness version"),
    ("bc1rw5uspcuh", "invalid program length"),
    ("bc10w508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kw5rljs90",
     "invalid program length"),
    ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "invalid program length for v0"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sL5k7", "mixed case"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du", "zero padding of more than 4 bits"),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3pjxtptv", "non-zero padding"),
    ("bc1gmk9yu", "empty data section"),
    ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "invalid hrp"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "bech32 for v1"),
    ("tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf", "bech32 for v2"),
    ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "bech32 for v16"),
    ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "bech32m for v0"),
    ("tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47", "bech32m for v0"),
    ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "bad checksum char"),
    ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "invalid version"),
    ("bc1pw5dgrnzv", "1-byte program"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
     "41-byte program"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "mixed case"),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "padding > 4 bits"),
    ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j", "non-zero padding"),
    # BIP 173's own "valid" v1+ addresses: bech32 checksums, which BIP 350 makes invalid.
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7k7grplx", "bech32 for v1"),
    ("BC1SW50QA3JX3S", "bech32 for v16"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvg6kdaj", "bech32 for v2"),
]  # fmt: skip


def _network_of(address: str) -> str:
    return HRP_NETWORK.get(address[: address.rfind("1")].lower(), "mainnet")


@pytest.mark.parametrize(("address", "script_hex"), VALID_SEGWIT)
def test_bip173_bip350_valid(address: str, script_hex: str) -> None:
    network = _network_of(address)
    script = address_to_script(address, network)
    assert script.hex() == script_hex
    assert script_to_address(script, network) == address.lower()


@pytest.mark.parametrize(("address", "reason"), INVALID_SEGWIT)
def test_bip173_bip350_invalid(address: str, reason: str) -> None:
    for network in ("mainnet", "testnet"):
        with pytest.raises(AddressError):
            address_to_script(address, network)


# BIP 173 and BIP 350 checksum-level vectors (every one both BIPs list), run against our codec.
BECH32M_VALID = [
    "A1LQFN3A", "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v", "?1v759aa",
]  # fmt: skip
BECH32_VALID = [
    "A12UEL5L", "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11" + "q" * 82 + "c8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w", "?1ezyfcl",
]  # fmt: skip
CHECKSUM_INVALID = [
    "\x201xj0phk", "\x7f1g6xzxy", "\x801vctc34",
    "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
    "qyrz8wqd2c9m", "1qyrz8wqd2c9m", "y1b0jsk6g", "lt1igcx5c0", "in1muywd", "mm1crxm3i",
    "au1s5cgom", "M1VUXWEZ", "16plkw9", "1p2gdwpf",
    "\x201nwldj5", "\x7f1axkwrx", "\x801eym55h",
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk", "1pzry9x0s0muk", "x1b4n0q5v", "li1dgmt3", "de1lg7wt\xff", "A1G7SGD8",
    "10a06t8", "1qzzfhee",
]  # fmt: skip


@pytest.mark.parametrize("text", BECH32M_VALID + BECH32_VALID)
def test_checksum_codec_valid(text: str) -> None:
    expected = Encoding.BECH32M if text in BECH32M_VALID else Encoding.BECH32
    assert bech32_decode(text)[2] == expected


@pytest.mark.parametrize("text", CHECKSUM_INVALID)
def test_checksum_codec_invalid(text: str) -> None:
    with pytest.raises(DecodeError):
        bech32_decode(text)


# Bitcoin Core src/test/data/key_io_valid.json (address entries), every network.
CORE_KEY_IO = [
    ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo", "76a914a31c06bd463e3923bc1aadbde48b16976c08071788ac", "mainnet"),
    ("36j4NfKv6Akva9amjWrLG6MuSQym1GuEmm", "a914373b819a068f32b7a6b38b6b38729647cfde01c287", "mainnet"),
    ("mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ", "76a914ce28b26c57472737f5c3561a1761185bd8589a4388ac", "testnet4"),
    ("2NC2hEhe28ULKAJkW5MjZ3jtTMJdvXmByvK", "a914ce0bba75891ff9ec60148d4bd4a09ee2dc5c933187", "testnet4"),
    ("mww4LvqtTMKvmeQvizPz2EQv26xTneWrbg", "76a914b4110ba93ac54afc14da3bdd19614774a2d55d2988ac", "signet"),
    ("2N1r7aC69VHeE7yQJPDLi9T1PYq4wnwvjuT", "a9145e5a35ab44b3efaea5129ba22b88ba3e2976614587", "signet"),
    ("n4fajahJrAuKbN7uNsKjLjQkz9Qn5ewJXQ", "76a914fdeca3b08e38af53d7c4c60e3ad208ce5066441088ac", "regtest"),
    ("2MxFajLApXpYk4VodBSZSt7rw8y4ryABkfA", "a91436e9f191e0b75036a77f65e2eaa4752443233fbe87", "regtest"),
    ("bc1qvyq0cc6rahyvsazfdje0twl7ez82ndmuac2lhv", "00146100fc6343edc8c874496cb2f5bbfec88ea9b77c", "mainnet"),
    ("bc1qyucykdlhp62tezs0hagqury402qwhk589q80tqs5myh3rxq34nwqhkdhv7",
     "002027304b37f70e94bc8a0fbf500e0c957a80ebda87280ef58214d92f119811acdc", "mainnet"),
    ("bc1p83n3au0rjylefxq2nc2xh2y4jzz4pm6zxj4mw5pagdjjr2a9f36s6jjnnu",
     "51203c671ef1e3913f94980a9e146ba895908550ef4234abb7503d436521aba54c75", "mainnet"),
    ("bc1z2rksukkjr8", "520250ed", "mainnet"),
    ("tb1qcrh3yqn4nlleplcez2yndq2ry8h9ncg3qh7n54", "0014c0ef1202759fff90ff19128936814321ee59e111", "testnet4"),
    ("tb1p35n52jy6xkm4wd905tdy8qtagrn73kqdz73xe4zxpvq9t3fp50aqk3s6gz",
     "51208d2745489a35b75734afa2da43817d40e7e8d80d17a26cd4460b0055c521a3fa", "testnet4"),
    ("tb1rgv5m6uvdk3kc7qsuz0c79v88ycr5w4wa", "53104329bd718db46d8f021c13f1e2b0e726", "testnet4"),
    ("tb1q3vya2h5435jkugq2few7dmktlrwq4ejmfaw7kr", "00148b09d55e958d256e200a4e5de6eecbf8dc0ae65b", "signet"),
    ("tb1pae5um27ahn8n73pgexe3kcwlp8dhswpn684h2k2w6t9a7w3eq65qephd5y",
     "5120ee69cdabddbccf3f4428c9b31b61df09db783833d1eb75594ed2cbdf3a3906a8", "signet"),
    ("bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9", "00146f58bac9506f9bfb821d62e69330410bb56f0085", "regtest"),
    ("bcrt1qan8gntac7z7me2ejt4hpru42ad2f759fmy0m3ejvs98656znv7eqga4uhv",
     "0020ecce89afb8f0bdbcab325d6e11f2aaeb549f50a9d91fb8e64c814faa685367b2", "regtest"),
    ("bcrt1pfwxjqvtt4tcxrtdluukfmy2dv7xd2qzdfy6kajv5nwn4yam3wxkq3553uh",
     "51204b8d20316baaf061adbfe72c9d914d678cd5004d49356ec9949ba752777171ac", "regtest"),
    ("bcrt1sx6p8njlx7h9mc2agz4yg82dzne23050ncq72cneeecez2pst8mahn8xecsf8g6hzx94420",
     "6028368279cbe6f5cbbc2ba8154883a9a29e5517d1f3c03cac4f39ce3225060b3efb799cd9c412746ae2",
     "regtest"),
]  # fmt: skip

# Written by bcoin 1.0.2 itself (node_modules/bcoin: Address.toString('regtest')).
BCOIN_REGTEST = [
    ("RKxTdfmtxtfLDKZBgx6SvNkBtNu9jRYnLh", "76a914751e76e8199196d454941c45d1b3a323f1433bd688ac"),
    ("GUXByHDZLvU4DnVH9imSFckt3HEQ5cFgE5", "a914751e76e8199196d454941c45d1b3a323f1433bd687"),
    ("rb1qw508d6qejxtdg4y5r3zarvary0c5xw7k38f4sn", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    ("RYRpX3VcdyGdtG1V8ULUcLXdtRGfr7a4A8", "76a914fdeca3b08e38af53d7c4c60e3ad208ce5066441088ac"),
    ("GgzYrewH215MtiwabF1TwaYL3KbvCPqyZG", "a914fdeca3b08e38af53d7c4c60e3ad208ce5066441087"),
    ("rb1qlhk28vyw8zh4847ycc8r45sgeegxv3qszf68tw", "0014fdeca3b08e38af53d7c4c60e3ad208ce50664410"),
    ("rb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qffcjef",
     "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262"),
]  # fmt: skip


@pytest.mark.parametrize(("address", "script_hex", "network"), CORE_KEY_IO)
def test_core_key_io_vectors(address: str, script_hex: str, network: str) -> None:
    script = address_to_script(address, network)
    assert script.hex() == script_hex
    assert script_to_address(script, network) == address
    if address.startswith(("bc1", "tb1", "bcrt1")):  # Core's tryCaseFlip: upper case is valid
        assert address_to_script(address.upper(), network) == script


@pytest.mark.parametrize(("address", "script_hex"), BCOIN_REGTEST)
def test_bcoin_regtest_flavour(address: str, script_hex: str) -> None:
    script = address_to_script(address, "regtest")
    assert script.hex() == script_hex
    assert script_to_address(script, "regtest-bcoin") == address
    core_form = script_to_address(script, "regtest")
    assert core_form is not None
    assert address_to_script(core_form, "regtest-bcoin") == script  # both flavours, both ways
    with pytest.raises(AddressError, match="regtest"):
        address_to_script(address, "mainnet")


def test_bcoin_v1_addresses_use_pre_bip350_bech32() -> None:
    """bcoin 1.0.2 predates BIP 350 and writes v1 with bech32; BIP 350 says reject it."""
    bcoin_v1 = "rb1prp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qkzghyh"
    with pytest.raises(AddressError, match=r"v1 must use bech32m \(BIP 350\)"):
        address_to_script(bcoin_v1, "regtest")


@pytest.mark.parametrize(
    ("address", "network", "message"),
    [
        ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo", "testnet", "0x00 of mainnet, not testnet3"),
        ("bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9", "mainnet", "is for regtest"),
        ("tb1qcrh3yqn4nlleplcez2yndq2ry8h9ncg3qh7n54", "mainnet", "hrp 'tb'"),
        ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mp", "mainnet", "checksum"),
        ("bc1qvyq0cc6rahyvsazfdje0twl7ez82ndmuac2lhw", "mainnet", "checksum"),
        ("tc1qw508d6qejxtdg4y5r3zarvary0c5xw7kg3g4ty", "mainnet", "unknown human-readable part"),
        ("", "mainnet", "empty address"),
        ("0OIl", "mainnet", "invalid address"),
        ("111111111111111111117K4nzc", "mainnet", "20 bytes, expected 21"),
        ("1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2m0", "mainnet", "invalid character '0' at position 33"),
        ("1" * 10_000, "mainnet", "no Bitcoin address is longer than 90"),  # a stranger's name
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
            "mainnet",
            "v1 must use bech32m",
        ),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh", "mainnet", "v0 must use bech32 checksum"),
        ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "mainnet", "v0 program must be 20 or 32 bytes"),
        ("bc1pw5dgrnzv", "mainnet", "witness program of 1 bytes"),
        ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "mainnet", "version 17"),
        ("tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq", "testnet", "mixed"),
        ("bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du", "mainnet", "bits of padding, more than 4"),
        (
            "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3pjxtptv",
            "testnet",
            "non-zero padding",
        ),
        ("bc1gmk9yu", "mainnet", "empty data section"),
        (
            "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",
            "mainnet",
            "'o' is not a bech32",
        ),
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "mainnet", "invalid checksum"),
    ],
)
def test_errors_name_the_problem(address: str, network: str, message: str) -> None:
    with pytest.raises(AddressError, match=message):
        address_to_script(address, network)


def test_network_names() -> None:
    for alias in ("mainnet", "main", "bitcoin", "MAINNET"):
        assert get_network(alias).name == "mainnet"
    for alias in ("testnet", "testnet3", "test"):
        assert get_network(alias).name == "testnet3"
    assert get_network("bcoin-regtest").bech32_hrp == "rb"
    assert get_network("regtest").bech32_hrp == "bcrt"
    with pytest.raises(ChainError, match="unknown network 'litecoin'"):
        get_network("litecoin")


@pytest.mark.parametrize(
    ("script_hex", "kind"),
    [
        ("76a914a31c06bd463e3923bc1aadbde48b16976c08071788ac", "p2pkh"),
        ("a914373b819a068f32b7a6b38b6b38729647cfde01c287", "p2sh"),
        ("00146100fc6343edc8c874496cb2f5bbfec88ea9b77c", "p2wpkh"),
        ("002027304b37f70e94bc8a0fbf500e0c957a80ebda87280ef58214d92f119811acdc", "p2wsh"),
        ("51203c671ef1e3913f94980a9e146ba895908550ef4234abb7503d436521aba54c75", "p2tr"),
        ("520250ed", "witness_v2"),
        ("6a24aa21a9ed" + "00" * 32, "op_return"),
        ("21" + "02" * 33 + "ac", "p2pk"),
        ("51", "nonstandard"),
    ],
)
def test_classify_script(script_hex: str, kind: str) -> None:
    script = bytes.fromhex(script_hex)
    assert classify_script(script) == kind
    has_address = kind not in ("op_return", "p2pk", "nonstandard")
    assert (script_to_address(script) is not None) == has_address
