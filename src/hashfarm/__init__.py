"""hashfarm: an open-source Bitcoin mining stack (pool, miner, farm manager, calculator)."""

__version__ = "0.1.0"
