"""The chart of `hashfarm farm report --plot DIR`: a machine's cumulative position, promised
against actual, with the payback days marked.

The same approach as `economics/charts.py`: a matplotlib `Figure` on an Agg canvas (no
display), matplotlib imported here only; it is the optional extra `plot`, and importing this
module without it raises a ConfigError naming the extra.
"""

from __future__ import annotations

from hashfarm.errors import ConfigError
from hashfarm.hosting.money import CENTS_PER_UNIT
from hashfarm.hosting.period import SECONDS_PER_DAY, fmt_day
from hashfarm.hosting.promise import MachineReport

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as exc:  # a light install leaves matplotlib out
    raise ConfigError(
        "the farm report's chart needs matplotlib, which is not installed: "
        "pip install 'hashfarm[plot]'"
    ) from exc

__all__ = ["promise_figure"]


def promise_figure(report: MachineReport) -> Figure:
    """Cumulative cash position by day since purchase: promised (a projection) and actual."""
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 1)
    days = list(range(1, report.days + 1))
    unit = CENTS_PER_UNIT
    cur = report.purchase.currency
    ax.plot(days, [c / unit for c in report.promised], linestyle="--",
            label="promised on the purchase day (projection)")  # fmt: skip
    ax.plot(days, [c / unit for c in report.actual], label="actual (earned - bills - price)")
    gap = report.gap_cents / unit
    ax.fill_between(days, [c / unit for c in report.promised], [c / unit for c in report.actual],
                    alpha=0.15, color="tab:red")  # fmt: skip
    ax.axhline(0, color="grey", linewidth=0.8)
    pb = report.payback
    if pb.day is not None:
        n = (pb.day - report.purchase.day) // SECONDS_PER_DAY + 1
        if n <= report.days:
            ax.axvline(n, color="tab:green", linestyle=":", linewidth=1)
    when = fmt_day(pb.day) if pb.day is not None else "never"
    ax.set_title(
        f"{report.machine_id} ({report.customer_id}): gap {gap:,.2f} {cur}; "
        f"payback {pb.status} {when}"
    )
    ax.set_xlabel(f"day since purchase ({fmt_day(report.purchase.day)})")
    ax.set_ylabel(f"cumulative position, {cur}")
    ax.legend(loc="best")
    return fig
