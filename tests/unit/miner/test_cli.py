"""`hashfarm miner` refuses bad settings with a message that names the problem."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hashfarm.cli.main import cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-o", "stratum+ssl://pool.example:443", "-u", "a"],
            "stratum+ssl:// is not supported yet",
        ),
        (["-u", "a"], "-o stratum+tcp://HOST:PORT is required"),
        (["-o", "stratum+tcp://h:1", "--backend", "nope"], "unknown hashing backend 'nope'"),
        (["-o", "http://h:1"], "scheme must be stratum+tcp://"),
        (["--solo", "--address", "x"], "miner.rpc: required with --solo"),
        (["--solo", "--rpc", "http://127.0.0.1:1"], "miner.address: required with --solo"),
        (["-o", "stratum+tcp://h:1", "--suggest-difficulty", "-1"], "suggest_difficulty"),
    ],
)
def test_bad_settings_exit_2_with_the_reason(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["miner", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_environment_variables_feed_the_flags() -> None:
    env = {"HASHFARM_MINER_URL": "stratum+ssl://pool.example:443"}
    result = CliRunner().invoke(cli, ["miner", "-u", "a"], env=env)
    assert result.exit_code == 2
    assert "stratum+ssl:// is not supported yet" in result.output
