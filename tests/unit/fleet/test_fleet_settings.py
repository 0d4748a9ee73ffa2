"""The fleet's settings: file < environment < flags, every key named in its errors."""

from __future__ import annotations

import pytest

from hashfarm.errors import ConfigError
from hashfarm.fleet.alerts import AlertPolicy
from hashfarm.fleet.faults import FaultKind
from hashfarm.fleet.poller import PollSettings
from hashfarm.fleet.settings import FleetSettings, fleet_keys, load_fleet_settings


def test_defaults() -> None:
    s = load_fleet_settings(environ={})
    assert s == FleetSettings()
    assert s.poll == PollSettings()
    assert s.alerts == AlertPolicy()
    assert "poll.interval_s" in fleet_keys()
    assert "alerts.immediate" in fleet_keys()


def test_file_then_environment_then_flags(tmp_path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(
        'store = "postgresql://db/fleet"\n'
        "[poll]\ninterval_s = 60\ntimeout_s = 4\n"
        '[alerts]\nraise_after = 3\nimmediate = ["overheating", "dead_fan"]\n'
        "[faults]\nchip_temp_max_c = 90\n"
    )
    s = load_fleet_settings(
        path,
        environ={"HASHFARM_FLEET_POLL_TIMEOUT_S": "7", "HASHFARM_FLEET_SCAN_CONCURRENCY": "64",
                 "HASHFARM_OTHER": "ignored"},
        flags={"alerts.raise_after": 1, "poll.concurrency": None},
    )  # fmt: skip
    assert s.store == "postgresql://db/fleet"
    assert (s.poll.interval_s, s.poll.timeout_s, s.poll.concurrency) == (60.0, 7.0, 512)
    assert s.scan.concurrency == 64
    assert s.alerts.raise_after == 1  # the flag wins
    assert s.alerts.immediate == {FaultKind.OVERHEATING, FaultKind.DEAD_FAN}
    assert s.faults.chip_temp_max_c == 90.0


@pytest.mark.parametrize(
    ("toml", "env", "said"),
    [
        ("[poll]\nintervl_s = 60\n", {}, "unknown setting fleet.poll.intervl_s in"),
        ('[poll]\ninterval_s = "soon"\n', {}, "fleet.poll.interval_s: 'soon' from"),
        ("[scan]\nconcurrency = 1.5\n", {}, "fleet.scan.concurrency: 1.5 from"),
        ("[poll]\ninterval_s = true\n", {}, "fleet.poll.interval_s: True"),
        ('[alerts]\nimmediate = ["hot"]\n', {}, "fleet.alerts.immediate: unknown kind 'hot'"),
        ("[poll]\ninterval_s = 10\ntimeout_s = 20\n", {}, "fleet.poll.timeout_s: 20.0 is out"),
        ("", {"HASHFARM_FLEET_POLL_INTERVAL": "5"}, "unknown setting HASHFARM_FLEET_POLL_INTERVAL"),
        ("", {"HASHFARM_FLEET_SCAN_CONCURRENCY": "many"}, "from HASHFARM_FLEET_SCAN_CONCURRENCY"),
        ("[poll\n", {}, "is not valid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path, toml: str, env: dict[str, str], said: str) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=said.replace(".", r"\.").replace("(", r"\(")):
        load_fleet_settings(path, environ=env)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read fleet config"):
        load_fleet_settings(tmp_path / "nope.toml", environ={})
