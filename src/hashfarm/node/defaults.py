"""Where a local Bitcoin Core listens and keeps its files, per network (Core's own defaults).

`hashfarm pool --network signet` with no RPC URL talks to 127.0.0.1 at the port Core uses
for signet, and with no credentials reads the cookie Core writes in its default data
directory, so a node started as plain `bitcoind -signet` needs no node flags on the pool.
Networks are named as `hashfarm.chain.networks` names them (aliases accepted).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hashfarm.chain.networks import Network, get_network
from hashfarm.node.cookie import NodeCookie

# Core's -rpcport defaults (chainparamsbase.cpp). bcoin's regtest listens on 48332; its other
# networks use Core's ports.
RPC_PORTS = {
    "mainnet": 8332,
    "testnet3": 18332,
    "testnet4": 48332,
    "signet": 38332,
    "regtest": 18443,
    "regtest-bcoin": 48332,
}


def default_rpc_url(network: str | Network) -> str:
    """`http://127.0.0.1:PORT/` with the RPC port a default node of `network` listens on."""
    return f"http://127.0.0.1:{RPC_PORTS[get_network(network).name]}/"


def default_datadir() -> Path:
    """Core's default -datadir for this user: ~/.bitcoin (Linux), ~/Library/Application
    Support/Bitcoin (macOS), %LOCALAPPDATA%\\Bitcoin (Windows, Core >= 28, which keeps
    using %APPDATA%\\Bitcoin where an older release left one)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Bitcoin"
    if sys.platform == "win32":
        legacy = Path(os.environ.get("APPDATA") or Path.home()) / "Bitcoin"
        if legacy.is_dir():
            return legacy
        return Path(os.environ.get("LOCALAPPDATA") or Path.home()) / "Bitcoin"
    return Path.home() / ".bitcoin"


def default_cookie(network: str | Network, datadir: str | Path | None = None) -> Path:
    """The cookie Core writes for `network` under `datadir` (None: `default_datadir()`)."""
    return NodeCookie.default_path(
        Path(datadir).expanduser() if datadir else default_datadir(), network
    )
