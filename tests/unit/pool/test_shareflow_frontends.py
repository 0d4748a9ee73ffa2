"""Several front ends of one pool: extranonce1 ranges and job ids never collide, a miner from
another front end resumes with a fresh value, and the cluster settings are checked."""

from __future__ import annotations

import pytest
from pool_helpers import template_of

from hashfarm.chain.block import Block
from hashfarm.errors import ConfigError
from hashfarm.pool.config import load_settings
from hashfarm.pool.jobs import JobBook, payout_outputs
from hashfarm.pool.server import ExtranonceAllocator
from hashfarm.pool.service import frontend_job_prefix
from hashfarm.pool.settings import ClusterSettings, PoolSettings

SCRIPT = bytes.fromhex("0014") + bytes(range(20))


def claim(alloc: ExtranonceAllocator, wanted: bytes | None = None, now: float = 0.0) -> bytes:
    return alloc.claim(object(), wanted, now)  # type: ignore[arg-type]


def test_front_ends_draw_disjoint_extranonce1_ranges() -> None:
    allocs = [ExtranonceAllocator(300.0, top=i) for i in (0, 1, 2, 255)]
    drawn = [{claim(a) for _ in range(3000)} for a in allocs]
    for alloc, values in zip(allocs, drawn, strict=True):
        assert len(values) == 3000
        assert {v[0] for v in values} == {alloc.top}
    union = set().union(*drawn)
    assert len(union) == 4 * 3000  # no value handed out by two front ends


def test_resume_from_another_front_end_gets_a_fresh_value_here() -> None:
    a, b = ExtranonceAllocator(300.0, top=1), ExtranonceAllocator(300.0, top=2)
    old = claim(a)
    a.release(old, now=1.0)
    moved = claim(b, old, now=2.0)  # the miner reconnects through the load balancer to b
    assert moved != old
    assert moved[0] == 2
    back = claim(a, old, now=3.0)  # and later back to a, within the resume window
    assert back == old


def test_single_process_allocator_is_unchanged() -> None:
    alloc = ExtranonceAllocator(300.0, values=iter([0x05000001, 0x07000002]))
    assert claim(alloc) == bytes.fromhex("05000001")
    assert claim(alloc, bytes.fromhex("09abcdef")) == bytes.fromhex("09abcdef")  # any resume


def test_job_ids_carry_the_front_end_prefix(small_block: Block) -> None:
    template = template_of(small_block)
    books = {
        fid: JobBook(
            payout_outputs(None, 0.0),
            tag=b"/hf/",
            extranonce2_size=8,
            generations_kept=400,
            job_prefix=frontend_job_prefix(fid),
        )
        for fid in (None, 0, 1, 16)
    }
    ids: dict[int | None, list[str]] = {fid: [] for fid in books}
    for _ in range(300):  # 300 templates: seq 1..300, ids of every length up to 3 hex digits
        for fid, jb in books.items():
            jb.set_template(template)
            ids[fid].append(jb.job_for(SCRIPT).job_id)
    assert ids[None][:3] == ["1", "2", "3"]  # the single process: as before
    assert ids[1][:3] == ["011", "012", "013"]
    assert ids[16][-1] == "1012c"
    front_ends = [set(ids[f]) for f in (0, 1, 16)]
    assert sum(map(len, front_ends)) == len(set().union(*front_ends)) == 900


def test_front_end_job_prefix() -> None:
    assert frontend_job_prefix(None) == ""
    assert frontend_job_prefix(0) == "00"
    assert frontend_job_prefix(255) == "ff"


def test_cluster_settings_defaults_are_the_single_process() -> None:
    s = PoolSettings().validate()
    assert s.cluster.role == "all"
    assert s.cluster.frontend_id is None


@pytest.mark.parametrize(
    ("cluster", "storage_url", "key"),
    [
        (ClusterSettings(role="stratum"), None, "cluster.frontend_id"),
        (ClusterSettings(role="stratum", frontend_id=256), None, "cluster.frontend_id"),
        (ClusterSettings(role="stratum", frontend_id=-1), None, "cluster.frontend_id"),
        (ClusterSettings(role="ledger"), "sqlite:///x.sqlite3", "storage.url"),
        (ClusterSettings(role="stratum", frontend_id=0, stream="a.b"), None, "cluster.stream"),
        (ClusterSettings(role="ledger", fetch_batch=0), "postgresql://h/db", "cluster.fetch_batch"),
    ],
)
def test_cluster_settings_refused(
    cluster: ClusterSettings, storage_url: str | None, key: str
) -> None:
    from dataclasses import replace

    s = replace(PoolSettings(), cluster=cluster)
    if storage_url is not None:
        s = replace(s, storage=replace(s.storage, url=storage_url))
    with pytest.raises(ConfigError, match=f"invalid setting {key}"):
        s.validate()


@pytest.mark.parametrize("role", ["stratum", "ledger"])
def test_tides_stays_single_process_and_pps_fpps_run_in_cluster_roles(role: str) -> None:
    flags = {"mode": "pooled", "payout_address": "bcrt1qxyz", "accounting.enabled": True,
             "accounting.scheme": "tides", "cluster.role": role, "cluster.frontend_id": 1,
             "storage.url": "postgresql://127.0.0.1/hashfarm"}  # fmt: skip
    with pytest.raises(ConfigError, match=r"invalid setting cluster\.role.*TIDES"):
        load_settings(flags=flags, environ={})
    for scheme in ("pplns", "prop", "solo", "pps", "fpps"):  # job terms cross the broker
        s = load_settings(flags=flags | {"accounting.scheme": scheme}, environ={})
        assert (s.cluster.role, s.accounting.scheme) == (role, scheme)


def test_cluster_keys_load_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASHFARM_CLUSTER_BROKER_URL", "nats://10.0.0.5:4222")
    s = load_settings(flags={"cluster.role": "stratum", "cluster.frontend_id": 3})
    assert s.cluster.role == "stratum"
    assert s.cluster.frontend_id == 3
    assert s.cluster.broker_url == "nats://10.0.0.5:4222"
    with pytest.raises(ConfigError, match=r"cluster\.role"):
        load_settings(flags={"cluster.role": "frontend"})
