"""Fixtures for the fleet tests: the real ASIC API captures, read in place from
../shared/fixtures/asic-api (licence notes in its README: they are not copied into the tree).
A missing ../shared skips these tests with the reason, and fails them under
HASHFARM_REQUIRE_SERVICES=1 (see tests/realdata.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hashfarm.fleet.model import MachineSnapshot
from hashfarm.fleet.sources import BACKENDS, read
from realdata import shared_path

ASIC_DIR = "fixtures/asic-api"


@pytest.fixture
def capture() -> Callable[[str], bytes]:
    """capture("antminer-s19pro-bmminer-stats.json") -> the bytes the machine sent."""

    def load(name: str) -> bytes:
        return shared_path(f"{ASIC_DIR}/{name}").read_bytes()

    return load


@pytest.fixture
def snapshot(capture: Callable[[str], bytes]) -> Callable[..., MachineSnapshot]:
    """snapshot("bmminer", "stats", "file.json", model=None): the file parsed through the
    backend's declarative map, exactly as a poller's reply would be."""

    def parse(backend: str, command: str, name: str, model: str | None = None) -> MachineSnapshot:
        return read(BACKENDS[backend], {command: capture(name)}, model=model)

    return parse
