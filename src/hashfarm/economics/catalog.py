"""The data shipped with the calculator: the ASIC catalog, mainnet epochs, the subsidy schedule.

The CSVs live in `hashfarm/data` (copied from the shared data set, provenance in its README)
and are read with `importlib.resources`, so an installed package never looks at `../shared`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

from hashfarm.errors import ConfigError

__all__ = [
    "EpochRecord",
    "MachineModel",
    "SubsidyEra",
    "difficulty_epochs",
    "find_model",
    "machine_models",
    "recent_growth_per_epoch",
    "subsidy_schedule",
]


@dataclass(frozen=True, slots=True)
class MachineModel:
    """One catalog row; figures the sources do not state are None, never guessed."""

    vendor: str
    model: str
    hashrate_ths: float | None  # nominal hashrate, TH/s
    power_w: float | None  # nominal wall power, W
    efficiency_j_per_th: float | None  # as stated by the source (may differ from W / TH/s)
    release_year: int | None
    source: str  # where the figures come from

    @property
    def complete(self) -> bool:
        """True when both hashrate and power are known, so the model can be simulated."""
        return self.hashrate_ths is not None and self.power_w is not None


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One mainnet retarget epoch as shipped in `difficulty_epochs.csv`."""

    epoch: int
    start_height: int
    end_height: int
    bits: int
    difficulty: float
    target: int
    prev_epoch_last_block_hash_hex: str  # display order; empty for epoch 0


@dataclass(frozen=True, slots=True)
class SubsidyEra:
    """One halving era of `block_subsidy_schedule.csv`."""

    halving_epoch: int
    start_height: int
    end_height: int
    subsidy_sats: int


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("hashfarm").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def _opt_float(cell: str) -> float | None:
    return float(cell) if cell.strip() else None


@cache
def machine_models() -> tuple[MachineModel, ...]:
    """Every model of the shipped catalog, in file order."""
    return tuple(
        MachineModel(
            vendor=r["vendor"],
            model=r["model"],
            hashrate_ths=_opt_float(r["hashrate_ths"]),
            power_w=_opt_float(r["power_w"]),
            efficiency_j_per_th=_opt_float(r["efficiency_j_per_th"]),
            release_year=int(r["release_year"]) if r["release_year"].strip() else None,
            source=r["source"],
        )
        for r in _rows("asic_models.csv")
    )


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def find_model(name: str) -> MachineModel:
    """Look a model up by name, forgiving case, spaces and a vendor prefix ("s19 pro").

    An exact (normalised) match wins; otherwise the single model whose name ends with the
    query ("A1466" -> "Avalon A1466"). Raises ConfigError naming the candidates otherwise.
    """
    models = machine_models()
    literal = name.strip().lower()  # "Whatsminer M30S++": not M30S+, which normalises the same
    same = [m for m in models if literal in (m.model.lower(), f"{m.vendor} {m.model}".lower())]
    if len(same) == 1:
        return same[0]
    query = _normalise(name)
    exact = [m for m in models if query in (_normalise(m.model), _normalise(m.vendor + m.model))]
    if len(exact) == 1:
        return exact[0]
    suffix = [m for m in models if _normalise(m.model).endswith(query)]
    if len(suffix) == 1:
        return suffix[0]
    candidates = exact or suffix or [m for m in models if query in _normalise(m.model)]
    hint = ", ".join(m.model for m in candidates) or "see `hashfarm calc models`"
    raise ConfigError(f"model: no single catalog model matches {name!r} ({hint})")


@cache
def difficulty_epochs() -> tuple[EpochRecord, ...]:
    """Every mainnet retarget epoch shipped with the package (epoch 0 first)."""
    return tuple(
        EpochRecord(
            epoch=int(r["epoch"]),
            start_height=int(r["start_height"]),
            end_height=int(r["end_height"]),
            bits=int(r["bits"], 16),
            difficulty=float(r["difficulty"]),
            target=int(r["target_hex"], 16),
            prev_epoch_last_block_hash_hex=r["prev_epoch_last_block_hash"],
        )
        for r in _rows("difficulty_epochs.csv")
    )


@cache
def subsidy_schedule() -> tuple[SubsidyEra, ...]:
    """The mainnet subsidy schedule, one row per halving era."""
    return tuple(
        SubsidyEra(
            halving_epoch=int(r["halving_epoch"]),
            start_height=int(r["start_height"]),
            end_height=int(r["end_height"]),
            subsidy_sats=int(r["subsidy_sats"]),
        )
        for r in _rows("block_subsidy_schedule.csv")
    )


def recent_growth_per_epoch(epochs: int = 52) -> float:
    """Geometric-mean difficulty growth per epoch over the last `epochs` shipped epochs.

    The calculator's default difficulty scenario: what the network actually did lately
    (52 epochs is about two years), rather than "today's difficulty forever".
    """
    history = difficulty_epochs()
    if not 1 <= epochs < len(history):
        raise ConfigError(f"epochs: must be between 1 and {len(history) - 1}")
    ratio = history[-1].difficulty / history[-1 - epochs].difficulty
    return float(ratio ** (1 / epochs) - 1)
