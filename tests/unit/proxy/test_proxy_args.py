"""`hashfarm proxy` arguments and upstream URLs (no sockets)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hashfarm.cli.main import cli
from hashfarm.errors import StratumError
from hashfarm.proxy.settings import Upstream


def test_upstream_urls() -> None:
    assert Upstream.parse("stratum+tcp://pool.example:3333") == Upstream("pool.example", 3333)
    assert Upstream.parse("10.0.0.2:3333") == Upstream("10.0.0.2", 3333)
    assert str(Upstream("h", 1)) == "stratum+tcp://h:1"
    for bad in ("http://pool:3333", "stratum+tcp://pool", "stratum+tcp://:3333", "pool:x"):
        with pytest.raises(StratumError):
            Upstream.parse(bad)


def test_the_command_is_registered_and_refuses_bad_addresses() -> None:
    runner = CliRunner()
    assert "--backup" in runner.invoke(cli, ["proxy", "--help"]).output
    bad = runner.invoke(cli, ["proxy", "--upstream", "http://x:1", "--user", "u"])
    assert bad.exit_code == 2
    assert "stratum+tcp://HOST:PORT" in bad.output
    listen = runner.invoke(
        cli, ["proxy", "--listen", "nowhere", "--upstream", "h:1", "--user", "u"]
    )
    assert listen.exit_code == 2
    assert "HOST:PORT" in listen.output
