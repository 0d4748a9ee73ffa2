"""Hash functions of Bitcoin: thin wrappers over hashlib (they sit on the pool's hot path)."""

from __future__ import annotations

from hashlib import sha256 as _sha256

__all__ = ["sha256", "sha256d"]


def sha256(data: bytes) -> bytes:
    """Single SHA-256 digest of `data`."""
    return _sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    """Double SHA-256 (Bitcoin's hash for headers, txids, merkle nodes), internal byte order."""
    return _sha256(_sha256(data).digest()).digest()
