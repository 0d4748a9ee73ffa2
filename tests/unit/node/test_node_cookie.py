"""NodeCookie: Bitcoin Core's `.cookie` file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashfarm.errors import ChainError, NodeAuthError, NodeUnavailable
from hashfarm.node.cookie import NodeCookie

# The shape Core writes: "__cookie__:" + 32 random bytes in hex, no trailing newline.
CORE_COOKIE = "__cookie__:" + "5f" * 32


def test_reads_what_core_writes(tmp_path: Path) -> None:
    path = tmp_path / ".cookie"
    path.write_text(CORE_COOKIE)
    assert NodeCookie.read(path) == NodeCookie("__cookie__", "5f" * 32)


def test_password_may_contain_colons() -> None:
    assert NodeCookie.parse("user:pa:ss\n") == NodeCookie("user", "pa:ss")


@pytest.mark.parametrize("text", ["", "no-colon", ":password", "user:", "a:b\nc:d"])
def test_malformed_cookie_is_an_auth_error(text: str) -> None:
    with pytest.raises(NodeAuthError, match="user:password"):
        NodeCookie.parse(text)


def test_missing_file_says_the_node_may_not_run(tmp_path: Path) -> None:
    with pytest.raises(NodeUnavailable, match="is the node running"):
        NodeCookie.read(tmp_path / ".cookie")


def test_unreadable_file_is_an_auth_error(tmp_path: Path) -> None:
    path = tmp_path / ".cookie"
    path.write_bytes(b"\xff\xfe:\x00")
    with pytest.raises(NodeAuthError, match="cannot be read"):
        NodeCookie.read(path)


@pytest.mark.parametrize(
    ("network", "relative"),
    [
        ("mainnet", ".cookie"),
        ("testnet", "testnet3/.cookie"),
        ("testnet3", "testnet3/.cookie"),
        ("main", ".cookie"),
        ("testnet4", "testnet4/.cookie"),
        ("signet", "signet/.cookie"),
        ("regtest", "regtest/.cookie"),
        ("regtest-bcoin", "regtest/.cookie"),
    ],
)
def test_default_path_follows_core_network_dirs(network: str, relative: str) -> None:
    assert NodeCookie.default_path("/data", network) == Path("/data") / relative


def test_unknown_network_is_named() -> None:
    with pytest.raises(ChainError, match="unknown network 'regnet'"):
        NodeCookie.default_path("/data", "regnet")
