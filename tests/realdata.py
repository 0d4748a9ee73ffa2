"""Where the real data lives: in the repository, plus what only `../shared` may hold.

Public chain data travels with the clone: the mainnet blocks in `tests/fixtures/blocks/` and the
package's data set in `src/hashfarm/data/` (both copies of the project's shared data, see their
READMEs). What may not be copied into the tree (the licensed ASIC API captures, the originals the
package copies are checked against) is reached through `shared_path`, which skips the test when
`../shared` (or `$HASHFARM_SHARED`) lacks it and fails it when HASHFARM_REQUIRE_SERVICES=1 (CI).

Importable from tests and bench/ (pytest `pythonpath = ["tests"]`): `REPO_DIR`, `BLOCKS_DIR`,
`FIXTURE_BLOCKS`, `load_block_bytes(name)`, `DATA_DIR`, `SHARED_DIR`, `shared_path(relative)`,
and `extranonce_offset(block)` for mining real blocks again the Stratum way.
"""

from __future__ import annotations

import os
from pathlib import Path

from hashfarm.chain import Block, bip34_height_push, encode_compact_size

REPO_DIR = Path(__file__).resolve().parent.parent
FIXTURES_DIR = REPO_DIR / "tests" / "fixtures"
BLOCKS_DIR = FIXTURES_DIR / "blocks"
DATA_DIR = REPO_DIR / "src" / "hashfarm" / "data"  # public data, byte copies of shared/data
SHARED_DIR = Path(os.environ.get("HASHFARM_SHARED") or REPO_DIR.parent / "shared").resolve()
REQUIRE_SHARED = os.environ.get("HASHFARM_REQUIRE_SERVICES") == "1"
FIXTURE_BLOCKS: list[Path] = sorted(BLOCKS_DIR.glob("*.raw"))

if not FIXTURE_BLOCKS:  # they are committed: an empty list is a broken checkout, not a skip
    raise RuntimeError(f"no fixture blocks in {BLOCKS_DIR}; the checkout is incomplete")


def load_block_bytes(name: str) -> bytes:
    """Raw bytes of a fixture block, by file name with or without `.raw` (e.g. 'mainnet-482683')."""
    path = BLOCKS_DIR / (name if name.endswith(".raw") else f"{name}.raw")
    return path.read_bytes()


def shared_path(relative: str) -> Path:
    """`SHARED_DIR / relative` when it exists. Otherwise the calling test is skipped, naming the
    missing path, or failed when HASHFARM_REQUIRE_SERVICES=1 (CI must not pass by skipping)."""
    path = SHARED_DIR / relative
    if path.exists():
        return path
    import pytest  # only tests reach here; bench/ imports this module without pytest

    reason = (
        f"needs {path}, data that is not in the repository "
        "(put shared/ beside the clone or set HASHFARM_SHARED)"
    )
    if REQUIRE_SHARED:
        pytest.fail(f"{reason}; HASHFARM_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(reason)


def extranonce_offset(block: Block) -> int:
    """Offset, in the non-witness coinbase, of the byte right after the BIP 34 height push:
    where a pool's extranonce slot starts if the block had been mined through Stratum."""
    script = block.coinbase.inputs[0].script_sig
    before_script = 4 + 1 + 36 + len(encode_compact_size(len(script)))  # version, 1 input
    return before_script + len(bip34_height_push(block.height_from_coinbase()))
