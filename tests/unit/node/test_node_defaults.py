"""node.defaults: the RPC port and cookie a default Bitcoin Core uses on each network."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hashfarm.errors import ChainError
from hashfarm.node.defaults import default_cookie, default_datadir, default_rpc_url


@pytest.mark.parametrize(
    ("network", "url"),
    [
        ("mainnet", "http://127.0.0.1:8332/"),
        ("main", "http://127.0.0.1:8332/"),
        ("testnet", "http://127.0.0.1:18332/"),
        ("testnet4", "http://127.0.0.1:48332/"),
        ("signet", "http://127.0.0.1:38332/"),
        ("regtest", "http://127.0.0.1:18443/"),
        ("regtest-bcoin", "http://127.0.0.1:48332/"),  # bcoin's own regtest port
    ],
)
def test_rpc_url_per_network(network: str, url: str) -> None:
    assert default_rpc_url(network) == url


def test_an_unknown_network_is_named() -> None:
    with pytest.raises(ChainError, match="unknown network 'regnet'"):
        default_rpc_url("regnet")


def test_the_cookie_lives_in_the_users_bitcoin_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_datadir() == tmp_path / ".bitcoin"
    assert default_cookie("mainnet") == tmp_path / ".bitcoin" / ".cookie"
    assert default_cookie("testnet4") == tmp_path / ".bitcoin" / "testnet4" / ".cookie"
    assert default_cookie("signet", "~/core") == tmp_path / "core" / "signet" / ".cookie"


def test_macos_and_windows_data_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "darwin")
    assert default_datadir() == tmp_path / "Library" / "Application Support" / "Bitcoin"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert default_datadir() == tmp_path / "Local" / "Bitcoin"  # Core >= 28
    (tmp_path / "Roaming" / "Bitcoin").mkdir(parents=True)
    assert default_datadir() == tmp_path / "Roaming" / "Bitcoin"  # an older node's, still used
