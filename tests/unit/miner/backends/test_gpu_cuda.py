"""The CUDA backend. Without a GPU its kernel source is compiled for the CPU (the CUDA
intrinsics replaced by plain C++ in cuda_on_cpu.cpp) and driven through the real host side,
so the kernel's arithmetic and the host's buffer handling are both checked against the
hashlib reference. With CuPy and a GPU, the `gpu` tests run the same checks on the device."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from backend_jobs import real_work
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashfarm.errors import ConfigError
from hashfarm.miner.backends import get_backend
from hashfarm.miner.backends.gpu_cuda import (
    BLOCK_THREADS,
    MAX_PER_THREAD,
    THREADS_PER_SM,
    CudaBackend,
    launch_geometry,
)
from hashfarm.miner.backends.gpu_cuda_kernel import KERNEL_SOURCE
from hashfarm.miner.backends.sha256_words import work_words
from realdata import FIXTURE_BLOCKS

HERE = Path(__file__).resolve().parent
REFERENCE = get_backend("hashlib")
HEADER76 = bytes.fromhex("02000000" + "ab" * 32 + "cd" * 32 + "5d1ec252" + "0cd30319")


class CpuDevice:
    """The kernel compiled with g++ and run over the whole grid on one CPU core."""

    sm_count = 1  # a small "GPU", so launches use several nonces per thread

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.launches: list[tuple[int, int]] = []  # (grid, out_size) of every launch

    def launch(self, args: tuple[Any, ...], grid: int, block: int, out_size: int) -> list[int]:
        self.launches.append((grid, out_size))
        argv = [
            str(self.binary),
            str(grid),
            str(block),
            str(out_size),
            *(str(int(a)) for a in args),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
        return [int(word) for word in done.stdout.split()]


@pytest.fixture(scope="module")
def cpu_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernel for the CPU")
    build = tmp_path_factory.mktemp("cuda_on_cpu")
    (build / "kernel.cu").write_text(KERNEL_SOURCE)
    binary = build / "cuda_on_cpu"
    command = [compiler, "-O2", "-std=c++17", "-Wall", "-Wno-unknown-pragmas", f"-I{build}"]
    subprocess.run([*command, str(HERE / "cuda_on_cpu.cpp"), "-o", str(binary)], check=True)
    return binary


@pytest.fixture
def cpu_cuda(cpu_binary: Path) -> CudaBackend:
    return CudaBackend(CpuDevice(cpu_binary))


easy_targets = st.builds(lambda shift: ((1 << 256) - 1) >> shift, st.integers(1, 10))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.binary(min_size=76, max_size=76),
    st.integers(0, 2**32 - 3000),
    st.integers(0, 3000),
    easy_targets,
)
def test_kernel_agrees_with_hashlib(
    cpu_cuda: CudaBackend, header76: bytes, start: int, count: int, target: int
) -> None:
    assert cpu_cuda.scan(header76, start, count, target) == REFERENCE.scan(
        header76, start, count, target
    )


def test_kernel_settles_ties_on_the_host(cpu_cuda: CudaBackend) -> None:
    # A target equal to one nonce's hash ties that nonce's top word: the host decides.
    nonce = 123_456
    number = int.from_bytes(_sha256d(HEADER76 + nonce.to_bytes(4, "little")), "little")
    for target, expect_nonce in ((number, True), (number - 1, False)):
        found = cpu_cuda.scan(HEADER76, nonce - 10, 20, target)
        assert found == REFERENCE.scan(HEADER76, nonce - 10, 20, target)
        assert (nonce in found) is expect_nonce


def test_overflowing_buffer_runs_the_launch_again(cpu_binary: Path) -> None:
    device = CpuDevice(cpu_binary)
    backend = CudaBackend(device, capacity=16)
    everything = (1 << 256) - 1
    assert backend.scan(HEADER76, 1000, 500, everything) == list(range(1000, 1500))
    assert [size for _, size in device.launches] == [2 + 2 * 16, 2 + 2 * 500]


def test_top_of_the_nonce_space(cpu_cuda: CudaBackend) -> None:
    start = 2**32 - 700
    target = ((1 << 256) - 1) >> 2
    assert cpu_cuda.scan(HEADER76, start, 700, target) == REFERENCE.scan(
        HEADER76, start, 700, target
    )


@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_the_real_blocks_are_found(cpu_cuda: CudaBackend, path: Path) -> None:
    header76, nonce, target = real_work(path)
    assert cpu_cuda.scan(header76, nonce - 3000, 6000, target) == [nonce]
    assert cpu_cuda.scan(header76, nonce + 1, 3000, target) == []


@pytest.mark.parametrize("count", [1, 255, 256, 257, 10**6, 2**32])
@pytest.mark.parametrize("sm_count", [1, 132])
def test_launch_geometry_covers_the_range(count: int, sm_count: int) -> None:
    per_thread, grid = launch_geometry(count, sm_count)
    assert 1 <= per_thread <= MAX_PER_THREAD
    assert grid * BLOCK_THREADS * per_thread >= count  # every nonce has a thread
    assert (grid - 1) * BLOCK_THREADS * per_thread < count  # no block is idle
    if count >= sm_count * THREADS_PER_SM:
        assert grid * BLOCK_THREADS >= sm_count * THREADS_PER_SM // 2  # the GPU is filled


def test_work_words_feed_the_kernel_arguments() -> None:
    words = work_words(HEADER76)
    assert words.tail == (0xCDCDCDCD, 0x5D1EC252, 0x0CD30319)


def _sha256d(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _gpu_backend() -> CudaBackend:
    try:
        backend = get_backend("cuda")
    except ConfigError as exc:
        pytest.skip(f"no CUDA GPU here: {exc}")
    assert isinstance(backend, CudaBackend)
    return backend


@pytest.mark.gpu
@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=76, max_size=76), st.integers(0, 2**32 - 100_000), easy_targets)
def test_gpu_agrees_with_hashlib(header76: bytes, start: int, target: int) -> None:
    backend = _gpu_backend()
    expected = REFERENCE.scan(header76, start, 5000, target)
    assert backend.scan(header76, start, 5000, target) == expected


@pytest.mark.gpu
@pytest.mark.parametrize("path", FIXTURE_BLOCKS, ids=lambda p: p.stem)
def test_gpu_finds_the_real_blocks(path: Path) -> None:
    backend = _gpu_backend()
    header76, nonce, target = real_work(path)
    start = max(0, nonce - (1 << 26))
    assert backend.scan(header76, start, 1 << 27, target) == [nonce]
    assert backend.scan(header76, nonce + 1, 1 << 26, target) == []


def test_cuda_needs_cupy_or_a_gpu_and_says_so() -> None:
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="'cuda' needs CuPy"):
            get_backend("cuda")
    with pytest.raises(ConfigError, match="drives one GPU; use 1, not 4"):
        get_backend("cuda", threads=4)
