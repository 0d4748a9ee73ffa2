"""Chain parameters of the Bitcoin networks hashfarm mines on (from Bitcoin Core's chainparams).

Regtest has two address flavours: Bitcoin Core's (`bcrt1...`, base58 prefixes 0x6f/0xc4) and
bcoin's (`rb1...`, 0x3c/0x26). Both are accepted on regtest; `regtest` writes Core's, and
`regtest-bcoin` (same chain) writes bcoin's, which is what the bcoin test node accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hashfarm.errors import ChainError

__all__ = [
    "MAINNET",
    "NETWORKS",
    "REGTEST",
    "REGTEST_BCOIN",
    "SIGNET",
    "TESTNET3",
    "TESTNET4",
    "Network",
    "get_network",
]


@dataclass(frozen=True, slots=True)
class Network:
    """Consensus and address parameters of one network; first prefix/hrp is the one we write."""

    name: str  # canonical name
    pow_limit: int  # easiest target a block may have
    pow_limit_bits: int  # pow_limit in compact form (the genesis/min-difficulty bits)
    halving_interval: int  # blocks between subsidy halvings
    p2pkh_prefixes: tuple[int, ...]  # base58 version bytes of P2PKH addresses
    p2sh_prefixes: tuple[int, ...]  # base58 version bytes of P2SH addresses
    bech32_hrps: tuple[str, ...]  # human-readable parts of segwit addresses
    allow_min_difficulty: bool  # a block 20 minutes late may use pow_limit (testnets)
    no_retargeting: bool = False  # difficulty never changes (regtest)
    retarget_interval: int = 2016  # blocks per difficulty epoch
    target_spacing: int = 600  # seconds per block the retarget aims at
    enforce_bip94: bool = False  # retarget from the epoch's first block's bits (testnet4)

    @property
    def p2pkh_prefix(self) -> int:
        """The P2PKH version byte this network writes."""
        return self.p2pkh_prefixes[0]

    @property
    def p2sh_prefix(self) -> int:
        """The P2SH version byte this network writes."""
        return self.p2sh_prefixes[0]

    @property
    def bech32_hrp(self) -> str:
        """The segwit human-readable part this network writes."""
        return self.bech32_hrps[0]


_MAIN_LIMIT = (1 << 224) - 1  # 0x00000000ffff...ff: Core's mainnet/testnet powLimit

MAINNET = Network(
    name="mainnet",
    pow_limit=_MAIN_LIMIT,
    pow_limit_bits=0x1D00FFFF,
    halving_interval=210_000,
    p2pkh_prefixes=(0x00,),
    p2sh_prefixes=(0x05,),
    bech32_hrps=("bc",),
    allow_min_difficulty=False,
)
TESTNET3 = replace(
    MAINNET,
    name="testnet3",
    p2pkh_prefixes=(0x6F,),
    p2sh_prefixes=(0xC4,),
    bech32_hrps=("tb",),
    allow_min_difficulty=True,
)
TESTNET4 = replace(TESTNET3, name="testnet4", enforce_bip94=True)
SIGNET = replace(
    TESTNET3,
    name="signet",
    pow_limit=0x00000377AE << 216,
    pow_limit_bits=0x1E0377AE,
    allow_min_difficulty=False,
)
REGTEST = Network(
    name="regtest",
    pow_limit=(1 << 255) - 1,  # Core: 0x7fff...ff (its compact form 0x207fffff rounds down)
    pow_limit_bits=0x207FFFFF,
    halving_interval=150,
    p2pkh_prefixes=(0x6F, 0x3C),
    p2sh_prefixes=(0xC4, 0x26),
    bech32_hrps=("bcrt", "rb"),
    allow_min_difficulty=True,
    no_retargeting=True,
)
REGTEST_BCOIN = replace(
    REGTEST,
    name="regtest-bcoin",
    p2pkh_prefixes=(0x3C, 0x6F),
    p2sh_prefixes=(0x26, 0xC4),
    bech32_hrps=("rb", "bcrt"),
)

NETWORKS: dict[str, Network] = {
    n.name: n for n in (MAINNET, TESTNET3, TESTNET4, SIGNET, REGTEST, REGTEST_BCOIN)
}
_ALIASES = {
    "main": "mainnet",
    "bitcoin": "mainnet",
    "testnet": "testnet3",
    "test": "testnet3",
    "bcoin-regtest": "regtest-bcoin",
}


def get_network(name: str | Network) -> Network:
    """The Network called `name` (mainnet/main/bitcoin, testnet/testnet3/test, testnet4,
    signet, regtest, regtest-bcoin); a Network is returned as is."""
    if isinstance(name, Network):
        return name
    key = name.strip().lower()
    network = NETWORKS.get(_ALIASES.get(key, key))
    if network is None:
        known = ", ".join(sorted([*NETWORKS, *_ALIASES]))
        raise ChainError(f"unknown network {name!r}; known: {known}")
    return network
