"""Pool configuration: TOML < HASHFARM_* environment < flags, and errors that name the key."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashfarm.cli.main import cli
from hashfarm.cli.pool import JsonFormatter
from hashfarm.errors import ConfigError
from hashfarm.pool.config import config_keys, load_settings
from hashfarm.pool.settings import PoolSettings

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pool.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_no_environment_no_flags_gives_the_regtest_defaults() -> None:
    assert load_settings(environ={}) == PoolSettings()


def test_each_source_overrides_the_one_before(tmp_path: Path) -> None:
    cfg = _toml(
        tmp_path,
        'mode = "pooled"\npayout_address = "rb1qfile"\n'
        "[stratum]\nport = 4000\nhost = '0.0.0.0'\n[vardiff]\ninitial = 0.001\n",
    )
    env = {"HASHFARM_STRATUM_PORT": "4001", "HASHFARM_VARDIFF_INITIAL": "2e-9"}
    s = load_settings(config_file=cfg, environ=env, flags={"stratum.port": 4002, "mode": None})
    assert (s.mode, s.payout_address) == ("pooled", "rb1qfile")  # file only
    assert s.stratum.host == "0.0.0.0"  # file only
    assert s.vardiff.initial == 2e-9  # environment beats file
    assert s.stratum.port == 4002  # flag beats both; a None flag is "not given"


def test_the_environment_can_name_the_file_and_parses_every_type(tmp_path: Path) -> None:
    cfg = _toml(tmp_path, "[http]\nport = 9090\n")
    env = {
        "HASHFARM_CONFIG": str(cfg),
        "HASHFARM_STRATUM_VERSION_MASK": "0x1fffe000",
        "HASHFARM_NODE_LONGPOLL": "no",
        "HASHFARM_NODE_RPC_USER": "",
        "HASHFARM_STORAGE_SQLITE_SYNCHRONOUS": "NORMAL",
        "HASHFARM_REQUIRE_SERVICES": "1",  # another tool's variable: not ours, not an error
    }
    s = load_settings(environ=env)
    assert s.http.port == 9090
    assert s.stratum.version_mask == 0x1FFFE000
    assert s.node.longpoll is False
    assert s.node.rpc_user is None
    assert s.storage.sqlite_synchronous == "NORMAL"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[stratum]\nprot = 1\n", r"unknown setting stratum\.prot .*did you mean stratum\.port"),
        ("colour = 'blue'\n", r"unknown setting colour"),
        ("[stratum]\nport = 'x'\n", r"invalid setting stratum\.port .*expected an integer"),
        ("[node]\nlongpoll = 1\n", r"invalid setting node\.longpoll"),
        ("mode = 'shared'\n", r"invalid setting mode .*'solo', 'pooled'"),
        ("[stratum]\nport = 70000\n", r"invalid setting stratum\.port: 70000"),
        ("network = 'dogecoin'\n", r"invalid setting network: unknown network 'dogecoin'"),
        ("mode = 'pooled'\n", r"invalid setting payout_address"),
        ("[stratum\n", r"not valid TOML"),
    ],
)
def test_a_bad_file_fails_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=_toml(tmp_path, toml), environ={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HASHFARM_STRATUM_PROT": "1"}, r"unknown setting in environment: HASHFARM_STRATUM_PROT"),
        ({"HASHFARM_HTTP_PORT": "eighty"}, r"invalid setting http\.port from \$HASHFARM_HTTP_PORT"),
        ({"HASHFARM_VARDIFF_ENABLED": "maybe"}, r"vardiff\.enabled .*expected true or false"),
        ({"HASHFARM_VARDIFF_MINIMUM": "-1"}, r"invalid setting vardiff\.minimum: -1\.0"),
    ],
)
def test_a_bad_environment_variable_fails_naming_it(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.toml"):
        load_settings(config_file=tmp_path / "nope.toml", environ={})


def test_every_key_is_documented_with_its_environment_variable() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \| `(HASHFARM_[A-Z0-9_]+)` \|", text, re.M))
    assert documented == {(k.dotted, k.env) for k in config_keys().values()}


def test_hashfarm_pool_refuses_a_bad_flag_or_file_before_starting(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_port = runner.invoke(cli, ["pool", "--stratum-port", "99999"], env={})
    assert bad_port.exit_code == 2
    assert "invalid setting stratum.port: 99999" in bad_port.output
    cfg = _toml(tmp_path, "[vardiff]\nmaximun = 5\n")
    bad_key = runner.invoke(cli, ["pool", "--config", str(cfg)])
    assert bad_key.exit_code == 2
    assert "unknown setting vardiff.maximun" in bad_key.output
    assert "did you mean vardiff.maximum?" in bad_key.output
    bad_env = runner.invoke(cli, ["pool"], env={"HASHFARM_STORAGE_BATCH_MAX": "many"})
    assert bad_env.exit_code == 2
    assert "storage.batch_max from $HASHFARM_STORAGE_BATCH_MAX" in bad_env.output


def test_log_lines_can_be_json_for_collectors() -> None:
    record = logging.LogRecord(
        "hashfarm.pool.server", logging.INFO, __file__, 1, "%s ready: %s", ("[#1]", "rb1q"), None
    )
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "info"
    assert doc["logger"] == "hashfarm.pool.server"
    assert doc["message"] == "[#1] ready: rb1q"
