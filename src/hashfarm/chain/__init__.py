"""Pure Bitcoin consensus and format code: hashes, PoW, headers, transactions, blocks,
merkle trees, coinbases, addresses and subsidies. No I/O, no asyncio.

Hashes are `bytes` in internal (wire) order; `*_hex` names mean display order.
"""

from hashfarm.chain.address import (
    address_to_script,
    classify_script,
    script_to_address,
    witness_program,
)
from hashfarm.chain.block import Block
from hashfarm.chain.checks import BlockCheck, check_block
from hashfarm.chain.coinbase import (
    CoinbaseParts,
    bip34_height,
    bip34_height_push,
    build_coinbase,
    script_num,
    split_coinbase,
)
from hashfarm.chain.hashes import sha256, sha256d
from hashfarm.chain.header import HEADER_SIZE, BlockHeader
from hashfarm.chain.merkle import (
    WITNESS_RESERVED_VALUE,
    coinbase_branch,
    merkle_branch,
    merkle_root,
    merkle_root_mutated,
    root_from_branch,
    witness_commitment,
    witness_commitment_script,
    witness_merkle_root,
)
from hashfarm.chain.networks import (
    MAINNET,
    REGTEST,
    REGTEST_BCOIN,
    SIGNET,
    TESTNET3,
    TESTNET4,
    Network,
    get_network,
)
from hashfarm.chain.pow import (
    DIFF1_TARGET,
    MAX_TARGET,
    bits_to_difficulty,
    bits_to_target,
    check_proof_of_work,
    difficulty_to_target,
    hash_difficulty,
    hash_to_int,
    meets_target,
    target_to_bits,
    target_to_difficulty,
)
from hashfarm.chain.serialize import ByteReader, encode_compact_size
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.chain.tx import COINBASE_PREVOUT, OutPoint, Transaction, TxIn, TxOut

__all__ = [
    "COINBASE_PREVOUT",
    "DIFF1_TARGET",
    "HEADER_SIZE",
    "MAINNET",
    "MAX_TARGET",
    "REGTEST",
    "REGTEST_BCOIN",
    "SIGNET",
    "TESTNET3",
    "TESTNET4",
    "WITNESS_RESERVED_VALUE",
    "Block",
    "BlockCheck",
    "BlockHeader",
    "ByteReader",
    "CoinbaseParts",
    "Network",
    "OutPoint",
    "Transaction",
    "TxIn",
    "TxOut",
    "address_to_script",
    "bip34_height",
    "bip34_height_push",
    "bits_to_difficulty",
    "bits_to_target",
    "block_subsidy",
    "build_coinbase",
    "check_block",
    "check_proof_of_work",
    "classify_script",
    "coinbase_branch",
    "difficulty_to_target",
    "encode_compact_size",
    "get_network",
    "hash_difficulty",
    "hash_to_int",
    "meets_target",
    "merkle_branch",
    "merkle_root",
    "merkle_root_mutated",
    "root_from_branch",
    "script_num",
    "script_to_address",
    "sha256",
    "sha256d",
    "split_coinbase",
    "target_to_bits",
    "target_to_difficulty",
    "witness_commitment",
    "witness_commitment_script",
    "witness_merkle_root",
    "witness_program",
]
