"""Hashing backends behind one small interface: scan a nonce range against a target.

`get_backend(name, threads)` builds one (`hashlib` reference, `numba` CPU, `cuda` GPU);
`available_backends()` lists those that run here. Backends are imported lazily.
"""

from __future__ import annotations

from .base import Backend, available_backends, get_backend

__all__ = ["Backend", "available_backends", "get_backend"]
