"""Pool configuration: TOML < HASHFARM_* environment < flags, and errors that name the key."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashfarm.cli.main import cli
from hashfarm.cli.pool import JsonFormatter, exposure_hints, node_access
from hashfarm.errors import ConfigError, LedgerError
from hashfarm.pool.config import config_keys, load_settings, redact_url
from hashfarm.pool.settings import PoolSettings, StorageSettings
from hashfarm.pool.storage import make_ledger, open_ledger

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


# -- the node: Core's defaults for the network, credentials, secrets kept out of messages -----


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory of our own, so Core's default data directory is under tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _cookie(home: Path, relative: str) -> Path:
    path = home / ".bitcoin" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("__cookie__:" + "ab" * 32)
    return path


@pytest.mark.parametrize(
    ("network", "port"),
    [
        ("mainnet", 8332),
        ("testnet", 18332),
        ("testnet4", 48332),
        ("signet", 38332),
        ("regtest", 18443),
        ("regtest-bcoin", 48332),
    ],
)
def test_the_rpc_url_follows_the_network(home: Path, network: str, port: int) -> None:
    settings = load_settings(environ={}, flags={"network": network})
    assert node_access(settings).url == f"http://127.0.0.1:{port}/"


def test_an_rpc_url_set_anywhere_is_kept_on_any_network(home: Path, tmp_path: Path) -> None:
    cfg = _toml(tmp_path, 'network = "mainnet"\n[node]\nrpc_url = "http://10.0.0.2:9000/"\n')
    assert node_access(load_settings(config_file=cfg, environ={})).url == "http://10.0.0.2:9000/"
    env = {"HASHFARM_NETWORK": "signet", "HASHFARM_NODE_RPC_URL": "http://node:1/"}
    assert node_access(load_settings(environ=env)).url == "http://node:1/"
    flags = {"network": "mainnet", "node.rpc_url": "http://127.0.0.1:18443/"}
    assert node_access(load_settings(environ={}, flags=flags)).url == "http://127.0.0.1:18443/"


@pytest.mark.parametrize(
    ("network", "relative"),
    [
        ("mainnet", ".cookie"),
        ("testnet", "testnet3/.cookie"),
        ("testnet4", "testnet4/.cookie"),
        ("signet", "signet/.cookie"),
        ("regtest", "regtest/.cookie"),
    ],
)
def test_with_no_credentials_cores_cookie_for_the_network_is_used(
    home: Path, network: str, relative: str
) -> None:
    cookie = _cookie(home, relative)
    access = node_access(load_settings(environ={}, flags={"network": network}))
    assert access.cookie == cookie
    assert (access.user, access.password) == (None, None)
    assert access.auth == f"cookie file {cookie}"  # the start-up log line names the file


def test_a_cookie_not_there_yet_is_waited_for_except_on_regtest(home: Path) -> None:
    mainnet = node_access(load_settings(environ={}, flags={"network": "mainnet"}))
    assert mainnet.cookie == home / ".bitcoin" / ".cookie"
    assert "not there yet" in mainnet.auth
    regtest = node_access(load_settings(environ={}))  # bcoin without an api-key needs no auth
    assert regtest.cookie is None
    assert f"no cookie at {home / '.bitcoin' / 'regtest' / '.cookie'}" in regtest.auth


def test_datadir_moves_the_cookie_and_credentials_replace_it(home: Path, tmp_path: Path) -> None:
    flags: dict[str, object] = {"network": "signet", "node.datadir": str(tmp_path / "core")}
    access = node_access(load_settings(environ={}, flags=flags))
    assert access.cookie == tmp_path / "core" / "signet" / ".cookie"
    _cookie(home, "signet/.cookie")
    given = node_access(load_settings(environ={}, flags={**flags, "node.rpc_user": "u",
                                                          "node.rpc_password": "p"}))  # fmt: skip
    assert (given.cookie, given.user, given.password) == (None, "u", "p")
    in_url = {"network": "signet", "node.rpc_url": "http://u:p@127.0.0.1:38332/"}
    assert node_access(load_settings(environ={}, flags=in_url)).cookie is None


def test_the_password_can_come_from_a_file_or_the_environment(home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "rpc.secret"
    secret.write_text("s3cret-from-file\nignored second line\n")
    from_file = load_settings(environ={}, flags={"node.rpc_password_file": str(secret)})
    assert node_access(from_file).password == "s3cret-from-file"
    env = {"HASHFARM_NODE_RPC_PASSWORD_FILE": str(secret)}
    assert node_access(load_settings(environ=env)).password == "s3cret-from-file"
    env = {"HASHFARM_NODE_RPC_PASSWORD": "s3cret-from-env"}
    assert node_access(load_settings(environ=env)).password == "s3cret-from-env"


def test_a_bad_password_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read node\.rpc_password_file .*nope"):
        node_access(load_settings(environ={}, flags={"node.rpc_password_file": "nope"}))
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        node_access(load_settings(environ={}, flags={"node.rpc_password_file": str(empty)}))
    both = {"node.rpc_password_file": str(empty), "node.rpc_password": "x"}
    with pytest.raises(ConfigError, match=r"invalid setting node\.rpc_password_file"):
        load_settings(environ={}, flags=both)


def test_no_error_message_shows_a_password(tmp_path: Path) -> None:
    cfg = _toml(tmp_path, "[node]\nrpc_password = 918273645\n")
    with pytest.raises(ConfigError, match=r"node\.rpc_password") as typed:
        load_settings(config_file=cfg, environ={})
    assert "918273645" not in str(typed.value)
    env = {"HASHFARM_NODE_RPC_TIMEOUT": "http://u:hunter2@x/"}  # a URL in the wrong variable
    with pytest.raises(ConfigError, match=r"node\.rpc_timeout") as misplaced:
        load_settings(environ=env)
    assert "hunter2" not in str(misplaced.value)


def test_a_mistyped_storage_url_does_not_echo_its_password() -> None:
    for url in ("postgresq://pool:s3cr3t@db.lan/pool", "postgres:/pool:s3cr3t@db.lan/pool"):
        with pytest.raises(ConfigError, match=r"invalid setting storage\.url") as info:
            make_ledger(StorageSettings(url=url))
        assert "s3cr3t" not in str(info.value)
        assert "***@db.lan/pool" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://pool:s3cr3t@127.0.0.1/pool?sslmod=require",  # libpq: unknown parameter
        "postgresql://pool:s3 cr3t@127.0.0.1/pool",  # libpq echoes the part with a space
        "postgresql://pool:s3cr3t@[::1/pool",  # libpq echoes the whole URL
    ],
)
async def test_a_malformed_postgres_url_fails_at_start_without_its_password(url: str) -> None:
    # libpq refuses these before any connection is tried: no server is needed
    with pytest.raises(LedgerError) as info:
        await open_ledger(StorageSettings(url=url))
    message = str(info.value)
    assert "s3cr3t" not in message
    assert "s3 cr3t" not in message
    assert "\n" not in message
    assert message.startswith("invalid setting storage.url 'postgresql://pool:***@")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://pool:pw@db/pool", "postgresql://pool:***@db/pool"),
        ("http://:apikey@127.0.0.1:48332/", "http://:***@127.0.0.1:48332/"),
        ("postgresql://pool:p@ss/w@db/pool", "postgresql://pool:***@db/pool"),  # unescaped @ /
        ("postgresql://pool@db/pool", "postgresql://pool@db/pool"),  # no password: unchanged
        ("postgres:/pool:pw@db/pool", "postgres:***@db/pool"),  # mistyped: hide from the ":"
        ("pool:pw@db", "pool:***@db"),
        ("sqlite:///var/lib/pool.sqlite3", "sqlite:///var/lib/pool.sqlite3"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_exposure_hints_say_what_to_bind() -> None:
    mainnet = load_settings(environ={}, flags={"network": "mainnet"})
    (stratum,) = exposure_hints(mainnet)  # loopback Stratum on a real network: miners can't reach
    assert "--stratum-host 0.0.0.0" in stratum
    assert exposure_hints(load_settings(environ={})) == []  # regtest: local miners are the point
    lan = {"network": "mainnet", "stratum.host": "0.0.0.0"}
    assert exposure_hints(load_settings(environ={}, flags=lan)) == []
    (api,) = exposure_hints(load_settings(environ={}, flags={**lan, "http.host": "0.0.0.0"}))
    assert "127.0.0.1" in api
    assert "docs/security.md" in api
