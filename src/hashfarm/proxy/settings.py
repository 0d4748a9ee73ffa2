"""The proxy's settings: where it listens, its upstreams, and each machine's budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from hashfarm.errors import StratumError


@dataclass(frozen=True, slots=True)
class Upstream:
    """One upstream pool: `stratum+tcp://host:port`."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """Parse `stratum+tcp://host:port` (or `host:port`); StratumError if malformed."""
        parts = urlsplit(url if "://" in url else f"stratum+tcp://{url}")
        if parts.scheme not in ("stratum+tcp", "stratum", "tcp") or not parts.hostname:
            raise StratumError(f"upstream must be stratum+tcp://HOST:PORT, got {url!r}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is None:
            raise StratumError(f"upstream needs a port: {url!r}")
        return cls(parts.hostname, port)

    def __str__(self) -> str:
        return f"stratum+tcp://{self.host}:{self.port}"


@dataclass(frozen=True)
class ProxySettings:
    """Defaults are the pool's per-connection budget (pool/settings.py `StratumSettings`)."""

    upstream: Upstream
    user: str
    password: str = "x"
    backup: Upstream | None = None
    host: str = "127.0.0.1"
    port: int = 3334  # 0: an ephemeral port (tests)
    prefix_size: int = 2  # bytes of the upstream extranonce2 given to each machine
    max_line: int = 16_384  # bytes per line once authorized
    max_line_unauthorized: int = 1024  # bytes per line before authorize
    max_connections_per_ip: int = 1024
    max_workers: int = 128  # worker names one connection may authorize
    max_output: int = 1 << 20  # bytes held unsent for one connection; beyond: closed
    lines_per_turn: int = 64  # lines of one connection handled per event-loop turn
    auth_timeout: float = 60.0  # seconds from connect to a successful authorize
    connect_timeout: float = 5.0  # seconds to reach an upstream and get through authorize
    upstream_idle: float = 120.0  # an upstream silent this long is treated as lost
    retry_primary: float = 5.0  # seconds between tries of the primary while on the backup
    submit_timeout: float = 10.0  # an upstream answer later than this: the share is refused
    allowed_workers: frozenset[str] | None = None  # customers (user before '.') allowed; None: any
    per_customer: bool = False  # one upstream session per customer (else one shared)
    user_template: str = "{customer}"  # per-customer mode: the upstream user of a customer
    max_upstreams: int = 64  # per-customer mode: sessions (customers) at most; beyond: refused
    upstream_extranonce2_size: int = 8  # per-customer mode: what upstreams must give at least
    store_every: float = 2.0  # seconds between writes of the work store's batch
    # Hosting's assignment at start (worker name -> customer id, `hosted.py`); None: the
    # customer is the worker name's part before its first ".".
    customers: Mapping[str, str] | None = None
