"""Prometheus text exposition (format 0.0.4) of the pool's statistics.

Written by hand rather than through a client library: the numbers already live in
`PoolStats`, so rendering them on scrape costs nothing while no share pays for a metric
update. Every reject reason is always exported (0 until it happens) so rate() works.
"""

from __future__ import annotations

from collections.abc import Iterable

from hashfarm.api.readmodel import ReadModel
from hashfarm.pool.records import REJECT_REASONS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(model: ReadModel) -> str:
    """The whole /metrics page."""
    lines: list[str] = []
    lines += _pool_metrics(model)
    lines += _worker_metrics(model)
    return "\n".join(lines) + "\n"


def _pool_metrics(model: ReadModel) -> list[str]:
    snap = model.stats.pool()
    rejected = {reason: snap.shares_rejected.get(reason, 0) for reason in REJECT_REASONS}
    rejected.update(snap.shares_rejected)
    job = model.pool.current_job()
    out = _family(
        "hashfarm_pool_hashrate_hps",
        "gauge",
        "Pool hashrate from accepted difficulty.",
        ((f'window="{w}"', h) for w, h in snap.hashrate.items()),
    )
    out += _family(
        "hashfarm_pool_connections",
        "gauge",
        "Open Stratum connections.",
        [("", len(model.pool.sessions()))],
    )
    out += _family(
        "hashfarm_pool_workers",
        "gauge",
        "Workers with a share in the last 24 h.",
        [("", snap.workers)],
    )
    out += _family(
        "hashfarm_pool_shares_accepted", "counter", "Accepted shares.", [("", snap.shares_accepted)]
    )
    out += _family(
        "hashfarm_pool_shares_rejected",
        "counter",
        "Rejected shares by reason.",
        ((f'reason="{_escape(r)}"', n) for r, n in sorted(rejected.items())),
    )
    out += _family(
        "hashfarm_pool_best_share_difficulty",
        "gauge",
        "Highest difficulty of an accepted share.",
        [("", snap.best_share)],
    )
    out += _family(
        "hashfarm_pool_blocks_found",
        "counter",
        "Blocks the node accepted.",
        [("", snap.blocks_found)],
    )
    out += _family(
        "hashfarm_pool_blocks_rejected",
        "counter",
        "Blocks the node refused.",
        [("", snap.blocks_rejected)],
    )
    if job is not None:
        out += _family(
            "hashfarm_pool_job_height",
            "gauge",
            "Height of the current job.",
            [("", job.template.height)],
        )
        out += _family(
            "hashfarm_pool_network_difficulty",
            "gauge",
            "Network difficulty of the current job.",
            [("", job.template.difficulty)],
        )
    return out


def _worker_metrics(model: ReadModel) -> list[str]:
    workers = model.stats.workers()
    rates = (
        (f'worker="{_escape(w.name)}",window="{win}"', h)
        for w in workers
        for win, h in w.hashrate.items()
    )
    out = _family(
        "hashfarm_worker_hashrate_hps", "gauge", "Worker hashrate from accepted difficulty.", rates
    )
    out += _family(
        "hashfarm_worker_shares_accepted",
        "counter",
        "Accepted shares per worker.",
        ((f'worker="{_escape(w.name)}"', w.shares_accepted) for w in workers),
    )
    return out


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float | int]]
) -> list[str]:
    suffix = "_total" if kind == "counter" else ""
    out = [f"# HELP {name}{suffix} {help_text}", f"# TYPE {name}{suffix} {kind}"]
    for labels, value in samples:
        out.append(
            f"{name}{suffix}{{{labels}}} {_number(value)}"
            if labels
            else f"{name}{suffix} {_number(value)}"
        )
    return out


def _number(value: float | int) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _escape(label: str) -> str:
    """A label value as the exposition format wants it (backslash, quote, newline escaped)."""
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
