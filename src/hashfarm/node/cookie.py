"""Bitcoin Core's RPC cookie file: the credentials a local node writes at each start.

Core writes `<datadir>[/<network dir>]/.cookie` holding `__cookie__:<random hex>` when it
starts with no `-rpcpassword`, and deletes it at shutdown. A new password is drawn at each
start, so a client must read the file again after a 401 (see `RPCClient`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hashfarm.chain.networks import Network, get_network
from hashfarm.errors import NodeAuthError, NodeUnavailable

COOKIE_NAME = ".cookie"

# The folder under -datadir where each network keeps its files (mainnet uses the datadir),
# by canonical network name (`hashfarm.chain.networks`).
NETWORK_DIRS = {
    "mainnet": "",
    "testnet3": "testnet3",
    "testnet4": "testnet4",
    "signet": "signet",
    "regtest": "regtest",
    "regtest-bcoin": "regtest",
}


@dataclass(frozen=True)
class NodeCookie:
    """User and password read from a node's cookie file."""

    user: str
    password: str

    @classmethod
    def parse(cls, text: str, source: str = "cookie") -> NodeCookie:
        """Split `user:password` (one line); a malformed cookie is an `NodeAuthError`."""
        line = text.strip()
        user, sep, password = line.partition(":")
        if not sep or not user or not password or "\n" in line:
            raise NodeAuthError(f"{source}: expected one line 'user:password'")
        return cls(user, password)

    @classmethod
    def read(cls, path: str | Path) -> NodeCookie:
        """Read a cookie file; a missing file means the node is not (yet) running."""
        path = Path(path)
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError as exc:
            raise NodeUnavailable(
                f"cookie file {path} not found: is the node running with this -datadir?"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise NodeAuthError(f"cookie file {path} cannot be read: {exc}") from exc
        return cls.parse(text, source=str(path))

    @staticmethod
    def default_path(datadir: str | Path, network: str | Network = "mainnet") -> Path:
        """Where Core puts the cookie for `network` (any name `get_network` knows) under
        `datadir`; ChainError names an unknown network."""
        sub = NETWORK_DIRS[get_network(network).name]
        return Path(datadir) / sub / COOKIE_NAME if sub else Path(datadir) / COOKIE_NAME
