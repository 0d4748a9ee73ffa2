"""The GPU backend: a CuPy RawKernel (CUDA C, see `gpu_cuda_kernel`) scanning nonces.

CuPy is an optional extra (`pip install hashfarm[cuda]`) imported only when this backend is
built. The host side here is GPU-agnostic: it computes the midstate, picks the launch
geometry, reads back the small result buffer, runs the range again when that buffer was
too small, and settles ties (hash top word equal to the target's) with the hashlib
reference. The device itself sits behind `KernelDevice`, so the tests can run the very
same kernel source compiled for the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hashfarm.errors import ConfigError

from .base import check_scan_args, is_winner
from .gpu_cuda_kernel import KERNEL_NAME, KERNEL_SOURCE
from .sha256_words import target_top_word, work_words

__all__ = ["CudaBackend", "CupyDevice", "KernelDevice", "Launch", "create", "launch_geometry"]

BLOCK_THREADS = 256  # threads per block: a multiple of the warp size, good occupancy
THREADS_PER_SM = 2048  # resident threads per multiprocessor on Volta..Hopper
MAX_PER_THREAD = 1024  # nonces per thread at most, so a launch stays well under a second
DEFAULT_CAPACITY = 4096  # winners (and ties) one launch reports before a re-run is needed


class KernelDevice(Protocol):
    """Something that runs `KERNEL_SOURCE`'s kernel: a real GPU, or the CPU in tests."""

    sm_count: int  # multiprocessors, to size the grid

    def launch(self, args: tuple[Any, ...], grid: int, block: int, out_size: int) -> list[int]:
        """Run the kernel with its scalar `args` (typed numpy scalars, in order) and a
        zeroed uint32 buffer of `out_size` words; return that buffer."""
        ...


class CupyDevice:
    """The current CUDA device, through CuPy; raises ConfigError when there is none."""

    def __init__(self) -> None:
        try:
            import cupy
        except ImportError as exc:
            raise ConfigError("backend: 'cuda' needs CuPy (pip install hashfarm[cuda])") from exc
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                raise ConfigError("backend: 'cuda' found no CUDA device")
            self.sm_count = int(cupy.cuda.Device().attributes["MultiProcessorCount"])
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            raise ConfigError(f"backend: 'cuda' cannot use the GPU: {exc}") from exc
        self._cupy = cupy
        self._kernel = cupy.RawKernel(KERNEL_SOURCE, KERNEL_NAME)

    def launch(self, args: tuple[Any, ...], grid: int, block: int, out_size: int) -> list[int]:
        """Run the kernel once and copy the result buffer back to the host."""
        out = self._cupy.zeros(out_size, dtype=self._cupy.uint32)
        self._kernel((grid,), (block,), (*args, out))
        result: list[int] = out.get().tolist()
        return result


def launch_geometry(count: int, sm_count: int) -> tuple[int, int]:
    """(nonces per thread, blocks) so that the grid fills the GPU once over."""
    resident = sm_count * THREADS_PER_SM
    per_thread = min(MAX_PER_THREAD, max(1, -(-count // resident)))
    threads = -(-count // per_thread)
    return per_thread, -(-threads // BLOCK_THREADS)


@dataclass(frozen=True)
class Launch:
    """What one kernel launch reported: counts, and the nonces that fitted the buffer."""

    n_hits: int  # winners found (may exceed the buffer)
    n_ties: int  # nonces whose top hash word equals the target's (may exceed the buffer)
    hits: list[int]
    ties: list[int]


class CudaBackend:
    """SHA-256d scanner on one CUDA GPU."""

    name = "cuda"

    def __init__(self, device: KernelDevice, capacity: int = DEFAULT_CAPACITY) -> None:
        self.threads = 1
        self._device = device
        self._capacity = capacity

    def scan(self, header76: bytes, nonce_start: int, count: int, target: int) -> list[int]:
        """All winning nonces of the range, ascending (see `Backend.scan`)."""
        check_scan_args(header76, nonce_start, count, target)
        found: list[int] = []
        # A launch covers at most MAX_PER_THREAD nonces per resident thread.
        step = MAX_PER_THREAD * self._device.sm_count * THREADS_PER_SM
        for start in range(nonce_start, nonce_start + count, step):
            size = min(step, nonce_start + count - start)
            found += self._scan_launch(header76, start, size, target)
        return sorted(found)

    def close(self) -> None:
        """Nothing to release: CuPy frees its buffers itself."""

    def _scan_launch(self, header76: bytes, start: int, count: int, target: int) -> list[int]:
        result = self._run(header76, start, count, target, self._capacity)
        needed = max(result.n_hits, result.n_ties)
        if needed > self._capacity:
            # The counts are exact even when the buffer overflowed: run again, big enough.
            result = self._run(header76, start, count, target, needed)
        return result.hits + [n for n in result.ties if is_winner(header76, n, target)]

    def _run(self, header76: bytes, start: int, count: int, target: int, capacity: int) -> Launch:
        words = work_words(header76)
        per_thread, grid = launch_geometry(count, self._device.sm_count)
        u32 = np.uint32
        args = (
            *(u32(x) for x in words.midstate),
            *(u32(x) for x in words.tail),
            u32(target_top_word(target)),
            u32(start),
            np.uint64(count),
            u32(per_thread),
            u32(capacity),
        )
        out = self._device.launch(args, grid, BLOCK_THREADS, 2 + 2 * capacity)
        n_hits, n_ties = out[0], out[1]
        hits = out[2 : 2 + min(n_hits, capacity)]
        ties = out[2 + capacity : 2 + capacity + min(n_ties, capacity)]
        return Launch(n_hits=n_hits, n_ties=n_ties, hits=hits, ties=ties)


def create(threads: int) -> CudaBackend:
    """Factory used by `get_backend("cuda", threads)`: one GPU, driven from one thread."""
    if threads != 1:
        raise ConfigError(f"threads: the cuda backend drives one GPU; use 1, not {threads}")
    return CudaBackend(CupyDevice())
