"""Results as rows of named values, ready for a table, JSON or CSV (pure: no printing).

Keys carry units (`_btc`, `_ehs`, `_day`); `fiat` in a key stands for the display currency,
which `label` substitutes. `plain` makes values JSON-safe: infinities (a payback that never
comes) become null, bits become hex.
"""

from __future__ import annotations

import math
from typing import Any

from hashfarm.economics.compare import Comparison
from hashfarm.economics.montecarlo import MonteCarloResult
from hashfarm.economics.network import NetworkState
from hashfarm.economics.odds import SoloOdds
from hashfarm.economics.payback import PaybackResult
from hashfarm.units import SATS_PER_BTC

__all__ = [
    "comparison_row",
    "format_value",
    "label",
    "mc_summary",
    "odds_summary",
    "payback_rows",
    "payback_summary",
    "plain",
    "state_summary",
]


def plain(value: Any, key: str = "") -> Any:
    """JSON-safe value: inf/nan become None ("never"), numpy scalars floats, bits hex."""
    if "bits" in key and isinstance(value, int):
        return f"{value:08x}"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return plain(value.item())
    return value


def format_value(key: str, value: Any) -> str:
    """How a table shows `value`: percentages, thousands separators, hex bits, "never"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "never" if "payback" in key else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if "bits" not in key else f"{value:08x}"
    if isinstance(value, float):
        if any(w in key for w in ("probability", "roi", "change", "share")):
            return f"{value:.4%}" if abs(value) >= 1e-4 else f"{value:.3e}"
        magnitude = abs(value)
        if magnitude >= 1e9 or 0 < magnitude < 1e-3:
            return f"{value:.4g}"
        return f"{value:,.0f}" if magnitude >= 1e4 else f"{value:,.{2 if magnitude >= 1 else 5}f}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(key, v) for v in value) or "none"
    return str(value)


def label(key: str, currency: str) -> str:
    """A key as a column title, with `fiat` replaced by the display currency."""
    return key.replace("fiat", currency).replace("_", " ")


def state_summary(state: NetworkState) -> dict[str, Any]:
    """The network figures every command that reads the network prints."""
    return {
        "network": state.network.name,
        "height": state.height,
        "difficulty": state.difficulty,
        "next_subsidy_btc": state.next_subsidy_sats / SATS_PER_BTC,
        "fees_btc_per_block": state.fees_btc_per_block,
        "fee_window_blocks": state.fee_window,
        "hashrate_from_difficulty_ehs": state.hashrate_from_difficulty_hs / 1e18,
        "hashrate_from_chainwork_ehs": None
        if state.hashrate_from_chainwork_hs is None
        else state.hashrate_from_chainwork_hs / 1e18,
    }


def payback_rows(run: PaybackResult, step: int = 30) -> list[dict[str, Any]]:
    """One row per `step` days: what a person reads; --csv/--json give every day."""
    rows = []
    for first in range(0, len(run.rows), step):
        chunk = run.rows[first : first + step]
        rows.append(
            {
                "days": f"{first + 1}-{first + len(chunk)}",
                "difficulty": chunk[0].difficulty,
                "subsidy_btc": chunk[0].subsidy_btc,
                "price_fiat": chunk[0].price,
                "btc_mined": sum(r.btc_mined for r in chunk),
                "profit_fiat": sum(r.profit for r in chunk),
                "cumulative_fiat": chunk[-1].cumulative,
                "days_off": sum(not r.running for r in chunk),
            }
        )
    return rows


def payback_summary(run: PaybackResult) -> dict[str, Any]:
    """The summary of `calc payback`."""
    return {
        "machine": run.machine,
        "count": run.count,
        "capex_fiat": run.capex,
        "horizon_days": run.horizon_days,
        "payback_day": run.payback_day,
        "static_payback_days": run.static_payback_days,
        "cumulative_end_fiat": run.cumulative_end,
        "roi": run.roi,
        "btc_mined": run.btc_mined,
        "days_off": run.days_off,
        "halving_days": list(run.halving_days),
    }


def mc_summary(mc: MonteCarloResult) -> dict[str, Any]:
    """The Monte Carlo part of the `calc payback` summary (`mc_` keys)."""
    return {
        "mc_paths": mc.paths,
        "mc_seed": mc.seed,
        "mc_probability_payback": mc.probability_payback,
        "mc_payback_p10_day": mc.payback_p10,
        "mc_payback_p50_day": mc.payback_p50,
        "mc_payback_p90_day": mc.payback_p90,
        "mc_cumulative_end_p10_fiat": mc.cumulative_end_p10,
        "mc_cumulative_end_p50_fiat": mc.cumulative_end_p50,
        "mc_cumulative_end_p90_fiat": mc.cumulative_end_p90,
    }


def comparison_row(c: Comparison) -> dict[str, Any]:
    """One machine's row of `calc compare`."""
    return {
        "machine": c.economics.machine,
        "j_per_th": c.economics.efficiency_j_per_th,
        "price_fiat": c.payback.capex / c.payback.count,
        "profit_per_day_fiat": c.economics.profit_per_day,
        "break_even_power_price_kwh": c.economics.break_even_power_price_kwh,
        "payback_day": c.payback.payback_day,
        "static_payback_days": c.payback.static_payback_days,
        "cumulative_end_fiat": c.payback.cumulative_end,
        "days_off": c.payback.days_off,
        "rank_payback": c.rank_payback,
        "rank_profit": c.rank_profit,
    }


def odds_summary(o: SoloOdds) -> dict[str, Any]:
    """The summary of `calc odds`."""
    return {
        "hashrate_ths": o.hashrate_hs / 1e12,
        "difficulty": o.difficulty,
        "blocks_per_day": o.blocks_per_day,
        **{f"probability_block_per_{k}": v for k, v in o.probability.items()},
        "expected_days_to_block": o.expected_days_to_block,
        "expected_years_to_block": o.expected_days_to_block / 365,
        "median_days_to_block": o.median_days_to_block,
        "share_of_network": o.share_of_network,
    }
