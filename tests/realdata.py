"""Where the real data lives: shared/ beside the clone, or $HASHFARM_SHARED.

Importable from tests (pytest `pythonpath = ["tests"]`): `SHARED_DIR`, `FIXTURE_BLOCKS`,
`load_block_bytes(name)`, `DATA_DIR`, and `extranonce_offset(block)` for mining real blocks
again the Stratum way.
"""

from __future__ import annotations

import os
from pathlib import Path

from hashfarm.chain import Block, bip34_height_push, encode_compact_size

REPO_DIR = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("HASHFARM_SHARED") or REPO_DIR.parent / "shared").resolve()
BLOCKS_DIR = SHARED_DIR / "fixtures" / "blocks"
DATA_DIR = SHARED_DIR / "data"
FIXTURE_BLOCKS: list[Path] = sorted(BLOCKS_DIR.glob("*.raw"))

if not FIXTURE_BLOCKS:  # fail loudly: silently skipping real-data tests would hide regressions
    raise RuntimeError(
        f"no fixture blocks in {BLOCKS_DIR}; put shared/ beside the repo or set HASHFARM_SHARED"
    )


def load_block_bytes(name: str) -> bytes:
    """Raw bytes of a fixture block, by file name with or without `.raw` (e.g. 'mainnet-482683')."""
    path = BLOCKS_DIR / (name if name.endswith(".raw") else f"{name}.raw")
    return path.read_bytes()


def extranonce_offset(block: Block) -> int:
    """Offset, in the non-witness coinbase, of the byte right after the BIP 34 height push:
    where a pool's extranonce slot starts if the block had been mined through Stratum."""
    script = block.coinbase.inputs[0].script_sig
    before_script = 4 + 1 + 36 + len(encode_compact_size(len(script)))  # version, 1 input
    return before_script + len(bip34_height_push(block.height_from_coinbase()))
