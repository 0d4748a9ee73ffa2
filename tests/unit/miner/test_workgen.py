"""Work distribution: threads never overlap, nonce space exhaustion rolls version bits."""

from __future__ import annotations

from dataclasses import replace

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import difficulty_to_target, hash_to_int
from hashfarm.miner.protocol import MinerJob
from hashfarm.miner.workgen import WorkSource, WorkUnit, check_nonce, deposit_bits, rolling_mask
from hashfarm.stratum.work import Job


def _work(job: Job, mask: int = 0, difficulty: float = 1e-6, en2_size: int = 4) -> MinerJob:
    target = difficulty_to_target(difficulty)
    return MinerJob(job, b"\x01\x02\x03\x04", en2_size, difficulty, target, mask, 0)


def _drain(source: WorkSource, thread: int, count: int, units: int) -> list[WorkUnit]:
    out = []
    for _ in range(units):
        unit = source.next_unit(thread, count)
        assert unit is not None
        out.append(unit)
    return out


def test_deposit_bits() -> None:
    assert deposit_bits(0, 0x1FFFE000) == 0
    assert deposit_bits(1, 0x1FFFE000) == 0x2000
    assert deposit_bits(0b101, 0b1011000) == 0b1001000
    assert deposit_bits(0xFFFF, 0x1FFFE000) == 0x1FFFE000


def test_threads_scan_disjoint_headers_and_nonces(real_job: Job) -> None:
    source = WorkSource(threads=3, nonce_space=1 << 12)
    source.set_work(_work(real_job))
    seen: set[tuple[bytes, int]] = set()
    for thread in range(3):
        for unit in _drain(source, thread, 1 << 10, 10):
            assert int.from_bytes(unit.extranonce2, "big") % 3 == thread
            for nonce in range(unit.nonce_start, unit.nonce_start + unit.count, 256):
                key = (unit.header76, nonce)
                assert key not in seen
                seen.add(key)
    assert len(seen) == 3 * 10 * 4


def test_nonce_space_exhaustion_rolls_version_then_extranonce2(real_job: Job) -> None:
    mask = 0x00006000  # two rollable bits: four versions per extranonce2
    source = WorkSource(threads=2, nonce_space=1000)
    source.set_work(_work(real_job, mask=mask))
    units = _drain(source, 1, 600, 10)
    assert [u.count for u in units[:2]] == [600, 400]  # never past the nonce space
    versions = [u.version for u in units[::2]]
    assert versions == [0x20000002, 0x20002002, 0x20004002, 0x20006002, 0x20000002]
    assert [u.extranonce2.hex() for u in units[::2]] == ["00000001"] * 4 + ["00000003"]
    assert len({u.header76 for u in units}) == 5


def test_rolling_never_touches_bits_the_job_already_sets(real_job: Job) -> None:
    job = replace(real_job, version=0x20002000)
    assert rolling_mask(_work(job, mask=0x1FFFE000)) == 0x1FFFC000


def test_same_job_rebound_keeps_cursors_new_job_resets(real_job: Job) -> None:
    source = WorkSource(threads=1, nonce_space=1 << 20)
    work = _work(real_job)
    source.set_work(work)
    first = source.next_unit(0, 100)
    source.set_work(replace(work, difficulty=2e-6, share_target=difficulty_to_target(2e-6)))
    second = source.next_unit(0, 100)
    assert first is not None
    assert second is not None
    assert second.nonce_start == 100
    assert second.target == difficulty_to_target(2e-6)
    source.set_work(_work(replace(real_job, job_id="j2", time=real_job.time + 1)))
    third = source.next_unit(0, 100)
    assert third is not None
    assert third.nonce_start == 0
    source.set_work(None)
    assert source.next_unit(0, 100) is None


def test_extranonce2_space_runs_out(real_job: Job) -> None:
    source = WorkSource(threads=200, nonce_space=10)
    source.set_work(_work(real_job, en2_size=1))
    assert source.next_unit(199, 10) is not None
    assert source.next_unit(199, 10) is None  # 199 + 200 > 255


def test_header76_is_the_job_header_and_check_nonce_verifies(real_job: Job) -> None:
    source = WorkSource(threads=1, nonce_space=1 << 32)
    work = _work(real_job, difficulty=2**-24)  # ~256 hashes per share
    source.set_work(work)
    unit = source.next_unit(0, 4096)
    assert unit is not None
    full = real_job.header(work.extranonce1, unit.extranonce2, real_job.time, 7)
    assert unit.header76 + (7).to_bytes(4, "little") == full
    found = [
        n
        for n in range(4096)
        if hash_to_int(sha256d(unit.header76 + n.to_bytes(4, "little"))) <= unit.target
    ]
    assert found, "about 16 shares expected in 4096 nonces"
    share = check_nonce(unit, found[0])
    assert share is not None
    assert share.hash == sha256d(full[:76] + found[0].to_bytes(4, "little"))
    assert share.difficulty >= 2**-24
    miss = next(n for n in range(4096) if n not in found)
    assert check_nonce(unit, miss) is None
