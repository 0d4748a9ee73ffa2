"""Every tunable of `hashfarm miner`, typed and frozen, and the pool URL it connects to.

The CLI fills `MinerSettings` from its flags (and `HASHFARM_MINER_*` environment variables
through click); `validate()` names the bad key, so a wrong value fails at start.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal
from urllib.parse import urlsplit

from hashfarm.errors import ConfigError
from hashfarm.miner.backends.base import NONCE_SPACE

Executor = Literal["auto", "process", "thread"]
OutputMode = Literal["live", "quiet", "json"]

DEFAULT_VERSION_MASK = 0x1FFFE000  # BIP 320 general-purpose bits we ask to roll


@dataclass(frozen=True, slots=True)
class PoolURL:
    """Where the pool listens: `stratum+tcp://HOST:PORT` (TLS comes later)."""

    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> PoolURL:
        """Parse a stratum URL; refuses TLS for now and anything that is not Stratum."""
        parts = urlsplit(url if "://" in url else f"stratum+tcp://{url}")
        if parts.scheme == "stratum+ssl" or parts.scheme == "stratum+tls":
            raise ConfigError(f"miner.url: {parts.scheme}:// is not supported yet (plain TCP only)")
        if parts.scheme not in ("stratum+tcp", "stratum", "tcp"):
            raise ConfigError(f"miner.url: scheme must be stratum+tcp://, got {parts.scheme!r}")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"miner.url: bad port in {url!r}") from None
        if not parts.hostname or port is None:
            raise ConfigError(f"miner.url: need stratum+tcp://HOST:PORT, got {url!r}")
        return cls(parts.hostname, port)

    def __str__(self) -> str:
        return f"stratum+{'ssl' if self.tls else 'tcp'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MinerSettings:
    """How `hashfarm miner` connects, hashes and reports."""

    user: str = ""  # pool user name, `ADDRESS[.WORKER]` or `ACCOUNT.WORKER`
    password: str = "x"  # pool password (most pools ignore it)
    backend: str = "hashlib"  # hashing backend name (see `miner.backends.available_backends`)
    threads: int = 1  # hashing workers; each gets its own extranonce2 sequence
    executor: Executor = "auto"  # where scans run: processes, threads, auto (by backend)
    version_rolling: bool = True  # ask the pool for BIP 310 version-rolling
    version_mask: int = DEFAULT_VERSION_MASK  # bits we offer to roll (the pool may narrow it)
    suggest_difficulty: float | None = None  # send mining.suggest_difficulty with this value
    user_agent: str = "hashfarm-miner/0.1"  # sent in mining.subscribe
    idle_after_block: bool = True  # after a block share, idle until the next job arrives
    max_hashrate: float | None = None  # H/s cap for the whole miner (sleeps between scans)
    nonce_space: int = NONCE_SPACE  # nonces per header before rolling version/extranonce2
    chunk_seconds: float = 0.25  # seconds of hashing per scan call (latency of a job switch)
    min_chunk: int = 1024  # fewest nonces per scan call
    connect_timeout: float = 10.0  # seconds to open the TCP connection
    response_timeout: float = 30.0  # seconds to wait for subscribe/authorize answers
    idle_timeout: float = 300.0  # seconds without any pool message before reconnecting
    backoff_initial: float = 0.5  # seconds before the first reconnect attempt
    backoff_max: float = 30.0  # cap of the doubling reconnect delay
    max_line: int = 64 * 1024  # bytes: a longer line from the pool drops the connection
    output: OutputMode = "live"  # Rich live table, errors only, or JSON lines
    stats_interval: float = 10.0  # seconds between JSON/quiet stats lines

    def validate(self) -> MinerSettings:
        """Return self, or raise ConfigError naming the first bad key."""
        _require(self.threads >= 1, "threads", "must be at least 1")
        _require(0 < self.version_mask <= 0xFFFFFFFF, "version_mask", "must be a 32-bit mask")
        _require(
            self.suggest_difficulty is None or self.suggest_difficulty > 0,
            "suggest_difficulty",
            "must be > 0",
        )
        _require(0 < self.nonce_space <= NONCE_SPACE, "nonce_space", "must be 1..2^32")
        _require(self.min_chunk >= 1, "min_chunk", "must be >= 1")
        _require(self.max_hashrate is None or self.max_hashrate > 0, "max_hashrate", "must be > 0")
        for name in ("chunk_seconds", "connect_timeout", "response_timeout", "idle_timeout"):
            _require(getattr(self, name) > 0, name, "must be > 0")
        _require(0 < self.backoff_initial <= self.backoff_max, "backoff_initial", "must be > 0")
        _require(self.executor in ("auto", "process", "thread"), "executor", "auto|process|thread")
        _require(self.output in ("live", "quiet", "json"), "output", "live|quiet|json")
        return self

    @classmethod
    def keys(cls) -> list[str]:
        """Every setting's name (for documentation checks)."""
        return [f.name for f in fields(cls)]


def _require(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"miner.{key}: {why}")
