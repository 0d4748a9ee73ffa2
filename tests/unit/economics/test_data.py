"""The data shipped with the package, re-derived from first principles."""

from __future__ import annotations

from importlib import resources

import pytest

from hashfarm.chain.pow import bits_to_difficulty, bits_to_target, target_to_bits
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.economics.catalog import (
    difficulty_epochs,
    find_model,
    machine_models,
    recent_growth_per_epoch,
    subsidy_schedule,
)
from hashfarm.errors import ConfigError
from realdata import shared_path


def test_every_epoch_is_rederived_from_its_bits() -> None:
    epochs = difficulty_epochs()
    assert len(epochs) == 474
    for i, e in enumerate(epochs):
        assert e.epoch == i
        assert (e.start_height, e.end_height) == (2016 * i, 2016 * i + 2015)
        assert bits_to_target(e.bits) == e.target, e
        assert target_to_bits(e.target) == e.bits, e
        assert bits_to_difficulty(e.bits) == e.difficulty, e  # Core's double arithmetic
        assert bool(e.prev_epoch_last_block_hash_hex) == (i > 0)


def test_known_epochs() -> None:
    epochs = difficulty_epochs()
    assert epochs[32256 // 2016].bits == 0x1D00D86A  # Core's get_next_work vector
    assert epochs[840000 // 2016].bits == 0x17034219
    assert epochs[840000 // 2016].difficulty == 86388558925171.02


def test_subsidy_schedule_matches_block_subsidy() -> None:
    eras = subsidy_schedule()
    assert len(eras) == 34
    for era in eras:
        for height in (era.start_height, era.end_height):
            assert block_subsidy(height, "mainnet") == era.subsidy_sats, era
        assert era.start_height == 210_000 * era.halving_epoch
    assert eras[4].subsidy_sats == 312_500_000  # 3.125 BTC from height 840,000
    assert eras[-1].subsidy_sats == 0


def test_catalog() -> None:
    models = machine_models()
    assert len(models) == 31
    assert sum(m.complete for m in models) >= 20
    s21 = find_model("S21")
    assert (s21.model, s21.hashrate_ths, s21.power_w) == ("Antminer S21", 200, 3500)
    assert find_model("a1466").model == "Avalon A1466"
    assert find_model("antminer s19 pro").model == "Antminer S19 Pro"
    with pytest.raises(ConfigError, match="S19"):
        find_model("s19x")  # several S19s contain it, none is it
    with pytest.raises(ConfigError):
        find_model("no such miner")


def test_recent_growth_is_the_geometric_mean() -> None:
    e = difficulty_epochs()
    g = recent_growth_per_epoch(4)
    assert e[-5].difficulty * (1 + g) ** 4 == pytest.approx(e[-1].difficulty)


@pytest.mark.parametrize(
    "name", ["asic_models.csv", "block_subsidy_schedule.csv", "difficulty_epochs.csv"]
)
def test_package_data_is_the_shared_data_unmodified(name: str) -> None:
    """data/README.md promises byte-for-byte copies of shared/data/ (skipped without it)."""
    original = shared_path(f"data/{name}").read_bytes()
    packaged = resources.files("hashfarm").joinpath("data", name).read_bytes()
    assert packaged == original
