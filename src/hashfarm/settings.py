"""Settings shared by every service: where the node is and which network it runs.

Each service adds its own frozen settings dataclass next to its code (pool, miner...); this
module holds only what they share and the loader conventions (TOML < HASHFARM_* env < flags).
"""

from __future__ import annotations

ENV_PREFIX = "HASHFARM_"
NETWORKS = ("mainnet", "testnet", "testnet4", "signet", "regtest")
