"""Every catalog model is found by its own name (the calculator's model list offers exactly
these names): "Whatsminer M30S++" must not be confused with "Whatsminer M30S+", which the
forgiving normalisation (no punctuation) makes look the same."""

from __future__ import annotations

import pytest

from hashfarm.economics import catalog


@pytest.mark.parametrize("model", [m.model for m in catalog.machine_models()])
def test_a_model_is_found_by_its_own_name(model: str) -> None:
    assert catalog.find_model(model).model == model
    assert catalog.find_model(model.upper()).model == model


def test_the_forgiving_lookup_still_works() -> None:
    assert catalog.find_model("s19 pro").model == "Antminer S19 Pro"
    assert catalog.find_model("Whatsminer M30S++").model == "Whatsminer M30S++"
    assert catalog.find_model("Whatsminer M30S+").model == "Whatsminer M30S+"
