"""Figures for `--plot`: cumulative cash flow, the payback distribution, the difficulty path.

Builders return a matplotlib `Figure` (Agg canvas, no display needed); the caller saves it.
matplotlib is imported here only, so the rest of the calculator never pays for it; it is the
optional extra `plot`, and importing this module without it raises a ConfigError naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hashfarm.errors import ConfigError

try:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:  # a light install: `pip install hashfarm` leaves matplotlib out
    raise ConfigError(
        "--plot needs matplotlib, which is not installed: pip install 'hashfarm[plot]'"
    ) from exc

from hashfarm.economics.montecarlo import MonteCarloResult
from hashfarm.economics.payback import PaybackResult

__all__ = ["payback_figure"]


def payback_figure(
    runs: Sequence[PaybackResult], currency: str, mc: MonteCarloResult | None = None
) -> Figure:
    """Cash flow of each run, the difficulty scenario, and (with `mc`) the payback spread."""
    panels = 3 if mc is not None else 2
    fig = Figure(figsize=(10, 3.4 * panels), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1)
    _cash_panel(axes[0], runs, currency)
    _difficulty_panel(axes[1], runs[0])
    if mc is not None:
        _distribution_panel(axes[2], mc)
    return fig


def _cash_panel(ax: Axes, runs: Sequence[PaybackResult], currency: str) -> None:
    for run in runs:
        days = [r.day + 1 for r in run.rows]
        (line,) = ax.plot(days, [r.cumulative for r in run.rows], label=run.machine)
        if run.payback_day is not None:
            ax.axvline(run.payback_day, color=line.get_color(), linestyle=":", linewidth=1)
        if run.static_payback_days is not None and run.static_payback_days < len(days):
            ax.axvline(run.static_payback_days, color=line.get_color(), alpha=0.35,
                       linestyle="--", linewidth=1)  # fmt: skip
    for day in runs[0].halving_days:
        ax.axvline(day, color="black", linewidth=0.8)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_title("Cumulative cash flow (dotted: payback; dashed: naive static payback; "
                 "black: halving)")  # fmt: skip
    ax.set_xlabel("day")
    ax.set_ylabel(currency)
    ax.legend(loc="best")


def _difficulty_panel(ax: Axes, run: PaybackResult) -> None:
    days = [r.day + 1 for r in run.rows]
    ax.step(days, [r.difficulty for r in run.rows], where="post", label="difficulty")
    ax.set_title("Difficulty scenario (per retarget epoch)")
    ax.set_xlabel("day")
    ax.set_ylabel("difficulty")
    twin = ax.twinx()
    off = [0 if r.running else 1 for r in run.rows]
    twin.fill_between(
        days, off, step="post", color="tab:red", alpha=0.15, label=f"{run.machine} switched off"
    )
    twin.set_ylim(0, 1.05)
    twin.set_yticks([])
    twin.legend(loc="upper left")


def _distribution_panel(ax: Axes, mc: MonteCarloResult) -> None:
    finite = mc.payback_days[np.isfinite(mc.payback_days)]
    if finite.size:
        ax.hist(finite, bins=60, color="tab:blue", alpha=0.8)
    for label, value in (("P10", mc.payback_p10), ("P50", mc.payback_p50),
                         ("P90", mc.payback_p90)):  # fmt: skip
        if value is not None:
            ax.axvline(value, color="black", linestyle="--", linewidth=1)
            ax.text(value, 0.95, f" {label}", transform=ax.get_xaxis_transform(), va="top")
    ax.set_title(
        f"Payback day over {mc.paths:,} paths: {mc.probability_payback:.1%} pay back "
        f"within {mc.horizon_days} days"
    )
    ax.set_xlabel("payback day")
    ax.set_ylabel("paths")
