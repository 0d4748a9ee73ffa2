"""Every backend re-mines the real mainnet blocks from the job a pool would send
(see backend_jobs.py): scanning a window around the block's nonce against the target of its
bits must find exactly that nonce, and a window beside it must find nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backend_jobs import real_work

from hashfarm.miner.backends import Backend, get_backend
from realdata import FIXTURE_BLOCKS

# Window sizes per backend: wide enough to mean something, short enough for a unit test.
WINDOWS = {"hashlib": 20_000, "numba": 1 << 20}


@pytest.fixture(scope="module", params=["hashlib", "numba"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    backend = get_backend(request.param)
    yield backend
    backend.close()


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_backend_finds_the_real_nonce(backend: Backend, path: Path) -> None:
    header76, nonce, target = real_work(path)
    window = WINDOWS[backend.name]
    start = max(0, nonce - window // 3)
    assert backend.scan(header76, start, window, target) == [nonce]


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_backend_finds_nothing_beside_the_real_nonce(backend: Backend, path: Path) -> None:
    header76, nonce, target = real_work(path)
    window = WINDOWS[backend.name]
    assert backend.scan(header76, nonce + 1, window, target) == []
    assert backend.scan(header76, nonce - window, window, target) == []
    assert backend.scan(header76, nonce, 1, target) == [nonce]


@pytest.mark.parametrize("path", FIXTURE_BLOCKS[:1], ids=lambda p: p.stem)
def test_threads_find_the_real_nonce(path: Path) -> None:
    header76, nonce, target = real_work(path)
    for name in ("numba", "hashlib"):
        backend = get_backend(name, threads=2)
        try:
            assert backend.scan(header76, nonce - 5_000, 10_001, target) == [nonce]
        finally:
            backend.close()
