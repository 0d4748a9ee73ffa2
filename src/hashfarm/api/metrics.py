"""Prometheus text exposition (format 0.0.4) of the pool's statistics.

Written by hand rather than through a client library: the numbers already live in
`PoolStats`, so rendering them on scrape costs nothing while no share pays for a metric
update. Every reject reason is always exported (0 until it happens) so rate() works.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from hashfarm.api.readmodel import ReadModel
from hashfarm.pool.bans import REASONS as BAN_REASONS
from hashfarm.pool.records import REJECT_REASONS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


Sample = tuple[str, float | int]  # (labels, value)
Family = tuple[str, str, str, Sequence[Sample]]  # (name, type, help, samples)


def render(model: ReadModel) -> str:
    """The whole /metrics page."""
    families = _pool_families(model) + _worker_families(model)
    return "\n".join(line for family in families for line in _family(*family)) + "\n"


def _pool_families(model: ReadModel) -> list[Family]:
    snap = model.stats.pool()
    rejected = {reason: 0 for reason in REJECT_REASONS} | snap.shares_rejected
    families: list[Family] = [
        ("hashfarm_pool_hashrate_hps", "gauge", "Pool hashrate from accepted difficulty.",
         [(f'window="{w}"', h) for w, h in snap.hashrate.items()]),
        ("hashfarm_pool_connections", "gauge", "Open Stratum connections.",
         [("", len(model.pool.sessions()))]),
        ("hashfarm_pool_workers", "gauge", "Workers with a share in the last 24 h.",
         [("", snap.workers)]),
        ("hashfarm_pool_shares_accepted", "counter", "Accepted shares.",
         [("", snap.shares_accepted)]),
        ("hashfarm_pool_shares_rejected", "counter", "Rejected shares by reason.",
         [(f'reason="{_escape(r)}"', n) for r, n in sorted(rejected.items())]),
        ("hashfarm_pool_best_share_difficulty", "gauge", "Highest accepted share difficulty.",
         [("", snap.best_share)]),
        ("hashfarm_pool_blocks_found", "counter", "Blocks the node accepted.",
         [("", snap.blocks_found)]),
        ("hashfarm_pool_blocks_rejected", "counter", "Blocks the node refused.",
         [("", snap.blocks_rejected)]),
        ("hashfarm_pool_bans_active", "gauge", "Addresses banned now, by reason.",
         _bans_by_reason(model)),
    ]  # fmt: skip
    job = model.pool.current_job()
    if job is not None:
        families += [
            ("hashfarm_pool_job_height", "gauge", "Height of the current job.",
             [("", job.template.height)]),
            ("hashfarm_pool_network_difficulty", "gauge", "Network difficulty of the job.",
             [("", job.template.difficulty)]),
        ]  # fmt: skip
    return families


def _bans_by_reason(model: ReadModel) -> list[Sample]:
    """Every known reason (0 until used) and any other the ban list reports."""
    counts = dict.fromkeys(BAN_REASONS, 0)
    for ban in model.pool.bans.active(time.time()):
        counts[ban.reason] = counts.get(ban.reason, 0) + 1
    return [(f'reason="{_escape(r)}"', n) for r, n in sorted(counts.items())]


def _worker_families(model: ReadModel) -> list[Family]:
    workers = model.stats.workers()
    rates = [(f'worker="{_escape(w.name)}",window="{win}"', h)
             for w in workers for win, h in w.hashrate.items()]  # fmt: skip
    accepted = [(f'worker="{_escape(w.name)}"', w.shares_accepted) for w in workers]
    return [
        ("hashfarm_worker_hashrate_hps", "gauge", "Worker hashrate from accepted difficulty.",
         rates),
        ("hashfarm_worker_shares_accepted", "counter", "Accepted shares per worker.", accepted),
    ]  # fmt: skip


def _family(name: str, kind: str, help_text: str, samples: Sequence[Sample]) -> list[str]:
    """HELP, TYPE and one line per sample (counters get the `_total` suffix)."""
    full = f"{name}_total" if kind == "counter" else name
    out = [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
    for labels, value in samples:
        out.append(f"{full}{{{labels}}} {_number(value)}" if labels else f"{full} {_number(value)}")
    return out


def _number(value: float | int) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _escape(label: str) -> str:
    """A label value as the exposition format wants it (backslash, quote, newline escaped)."""
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
