"""Every tunable of `hashfarm pool`, typed and frozen.

`pool/config.py` fills `PoolSettings` from TOML < `HASHFARM_*` environment < flags; the pool
core only reads it. Each field carries a one-line comment with its unit and effect, and
`PoolSettings.validate()` rejects values that cannot work, naming the key (dotted path as in
the TOML file), so a bad configuration fails at start and never half-way through a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Literal

from hashfarm.chain.networks import get_network
from hashfarm.errors import ChainError, ConfigError
from hashfarm.stratum.proxyproto import parse_sources

if TYPE_CHECKING:  # accounting (numpy) is imported only when a scheme is built
    from hashfarm.accounting.schemes import Scheme as AcctScheme

Mode = Literal["solo", "pooled"]

POOL_VERSION_MASK = 0x1FFFE000  # BIP 320 general-purpose bits a miner may roll


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """How the pool reaches the Bitcoin node and how it watches for new work."""

    rpc_url: str | None = None  # JSON-RPC endpoint (None: 127.0.0.1, Core's port for network)
    rpc_user: str | None = None  # RPC user name (None: cookie file or no auth)
    rpc_password: str | None = None  # RPC password (bcoin: the api-key); visible in `ps` as a flag
    rpc_password_file: str | None = None  # file whose first line is the RPC password
    rpc_cookie: str | None = None  # path of Core's .cookie file (replaces user/password)
    datadir: str | None = None  # Core's -datadir: no credentials -> its cookie (None: ~/.bitcoin)
    rpc_timeout: float = 30.0  # seconds before one RPC call is abandoned
    zmq_hashblock: str | None = None  # ZMQ hashblock URL (Core -zmqpubhashblock); None: off
    longpoll: bool = True  # use GBT longpoll when the node offers it
    poll_interval: float = 0.1  # seconds between getbestblockhash polls (fallback, always on)
    refresh_interval: float = 20.0  # seconds between template refreshes for new txs (no clean)
    retry_max: float = 5.0  # seconds: cap of the backoff while the node is away
    check_coinbase: bool = True  # at start, prove the coinbase valid with the node (refuse else)


@dataclass(frozen=True, slots=True)
class BlockSettings:
    """How block candidates go to the node (policy in pool/candidates.py)."""

    queue_per_height: int = 4  # candidates kept waiting per previous block while one is out
    queue_max: int = 32  # candidates kept waiting in all (beyond: recorded as not submitted)
    submit_patience: float = 120.0  # seconds a candidate waits for an away node, then dropped
    stop_drain: float = 5.0  # seconds stop() gives pending blocks; the rest is logged by hash


@dataclass(frozen=True, slots=True)
class StratumSettings:
    """The Stratum V1 listener and the limits each connection lives under."""

    host: str = "127.0.0.1"  # address to listen on ("0.0.0.0" for every interface)
    port: int = 3333  # TCP port (0: an ephemeral port, reported by Pool.stratum_port)
    extranonce2_size: int = 8  # bytes of extranonce2 the miner rolls (4..8)
    max_line: int = 16_384  # bytes: a longer request line closes the connection
    max_connections: int = 20_000  # connections beyond this are closed at accept
    idle_timeout: float = 600.0  # seconds without a request before a connection is closed
    auth_timeout: float = 60.0  # seconds allowed between connect and a successful authorize
    ntime_future: int = 7200  # seconds a share's ntime may run ahead of the job's (Core: 2h)
    ntime_past: int = 0  # seconds a share's ntime may lag the job's (0: not before curtime)
    jobs_kept: int = 16  # recent jobs kept per payout script so late shares are judged
    version_mask: int = POOL_VERSION_MASK  # bits the pool lets miners roll (BIP 310)
    resume_window: float = 300.0  # seconds an extranonce1 stays reserved for session resume
    raise_nofile: bool = True  # raise RLIMIT_NOFILE to the hard limit at start
    # The per-connection and per-IP budget (docs/configuration.md says why each default is
    # safe for hundreds of machines behind one NAT address).
    max_line_unauthorized: int = 1024  # bytes: longest line before authorize (ckpool: 1 KiB)
    max_connections_per_ip: int = 1024  # connections one IP may hold (NAT farms: hundreds)
    max_unauthorized_per_ip: int = 256  # connections one IP may hold before they authorize
    max_workers: int = 128  # worker names one connection may authorize (proxies: many)
    max_output: int = 1 << 20  # bytes queued for one connection (unsent); beyond: closed
    lines_per_turn: int = 64  # lines of one connection handled per event-loop turn
    lines_per_second: float = 5000.0  # lines a connection may send per second (then: read later)
    get_transactions: Literal["txids", "off"] = "txids"  # what mining.get_transactions answers
    get_transactions_interval: float = 30.0  # seconds between two answered get_transactions
    # PROXY protocol v1/v2 (a TCP load balancer's header with the miner's real address): only
    # from these comma-separated addresses/networks, which must send one first; "" is off.
    proxy_protocol_from: str = ""  # trusted balancers, e.g. "10.0.0.5, 10.0.1.0/24"; "": off
    proxy_protocol_timeout: float = 5.0  # seconds a trusted connection has to send its header


@dataclass(frozen=True, slots=True)
class BanSettings:
    """When an IP is banned from Stratum (pure engine in pool/bans.py)."""

    enabled: bool = True  # False: count nothing, ban nobody (manual bans still work)
    seconds: float = 600.0  # how long an automatic ban lasts
    window: float = 60.0  # seconds over which junk lines and failed authorizations are counted
    junk_lines: int = 100  # bad JSON, unknown/disallowed methods, oversize lines per window
    failed_authorizations: int = 100  # refused mining.authorize per window
    share_window: float = 300.0  # seconds over which the invalid-share ratio is judged
    invalid_ratio: float = 0.95  # ban when rejected/judged shares exceeds this...
    invalid_min_shares: int = 1000  # ...over at least this many shares in the window
    exempt_loopback: bool = True  # 127.0.0.0/8 and ::1: never banned, no per-IP caps
    max_tracked_ips: int = 65_536  # IPs with counters or bans kept at most (oldest dropped)


@dataclass(frozen=True, slots=True)
class VardiffSettings:
    """Per-connection share difficulty control (pure logic in pool/vardiff.py)."""

    initial: float = 1.0  # share difficulty a new connection starts with (clamped)
    minimum: float | None = None  # lowest share difficulty, suggestions included (None: network's)
    maximum: float = 1e15  # highest share difficulty (also clamped to the network's)
    target_interval: float = 10.0  # seconds between shares the controller aims for
    retarget_shares: int = 20  # retarget after this many shares since the last change...
    retarget_time: float = 60.0  # ...or after this many seconds, whichever comes first
    tolerance: float = 0.3  # relative rate error tolerated before the difficulty changes
    max_step: float = 8.0  # largest factor by which one retarget may change difficulty
    enabled: bool = True  # False: keep the initial/suggested difficulty for ever

    def floor(self, network: str) -> float:
        """The lowest share difficulty on `network`: `minimum`, or the network's default."""
        if self.minimum is not None:
            return self.minimum
        try:
            name = get_network(network).name
        except ChainError:
            return NETWORK_FLOORS["mainnet"]  # unknown names are refused at load; be strict
        return NETWORK_FLOORS.get(name, NETWORK_FLOORS["mainnet"])


# Default vardiff.minimum per network. Every share at or above the floor is stored (fsynced)
# and answered, so the floor prices a stored share in hashes (difficulty x 2**32).
# mainnet: 1, ckpool's default mindiff (no ASIC needs less: a 1 TH/s miner finds a
# difficulty-1 share every 4 ms). Test networks: 0.001, the lowest ckpool-lhr accepts
# without a warning, so a CPU miner (~10 MH/s) still sends a few shares a second; a
# hostile miner can make at most one stored share per 4.3 million hashes. Regtest: 1e-12,
# far below its own difficulty (~4.7e-10; vardiff's network ceiling wins there anyway).
NETWORK_FLOORS: dict[str, float] = {
    "mainnet": 1.0,
    "testnet3": 0.001,
    "testnet4": 0.001,
    "signet": 0.001,
    "regtest": 1e-12,
    "regtest-bcoin": 1e-12,
}


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where shares and blocks are recorded (implemented by pool/storage)."""

    url: str = "sqlite:///hashfarm-pool.sqlite3"  # sqlite:///PATH or postgresql://...
    batch_max: int = 512  # shares per group commit at most
    # Storage owner: 0 measured best (bench/bench_pool_ledger.py): shares that arrive during a
    # commit already form the next batch, so waiting to fill one only adds latency.
    batch_wait: float = 0.0  # seconds a batch may wait to fill before it commits
    # Added by the storage owner (pool/storage): SQLite's PRAGMA synchronous for the ledger.
    sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"  # FULL: fsync per commit
    # Where the SQLite ledger's writing connection runs: a child process of its own (its own
    # GIL; docs/benchmarks.md, fourth pass) or a thread of the pool's process.
    sqlite_writer: Literal["process", "thread"] = "process"  # process: commits off the GIL
    # A database outage must not grow memory without bound (~0.7 kB per waiting share): past
    # this backlog a share is answered "share not recorded: ledger backlog full", never acked.
    queue_max: int = 50_000  # shares waiting for a commit at most; then shares are refused


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The HTTP JSON API and Prometheus metrics (implemented by api/)."""

    host: str = "127.0.0.1"  # address the API listens on
    port: int = 8080  # TCP port of the API (0: disabled)
    admin_token_file: str | None = None  # file holding the admin token (None: no admin routes)
    admin_host: str = "127.0.0.1"  # address of the admin listener (login, admin pages)
    admin_port: int = 0  # TCP port of the admin listener (0: none)
    admin_password_file: str | None = None  # `hashfarm web passwd` users (None: no logins)


SchemeName = Literal["solo", "prop", "pplns", "tides", "pps", "fpps"]

# The whole non-witness coinbase a TIDES job may have, in bytes (accounting.coinbase_max_bytes).
# Two limits meet here (docs/configuration.md, [accounting]). The node: Bitcoin Core fills a
# template up to 4,000,000 weight units less `-blockreservedweight` (policy.h
# DEFAULT_BLOCK_RESERVED_WEIGHT = 8000) for the header, the transaction count and the
# coinbase, so a coinbase of B non-witness bytes must keep 4 B + 36 (its witness) + 332 within
# 8,000: B <= 1,908. Miner firmware: ESP-Miner (Bitaxe) hashes the coinbase from an array on
# an 8 KiB task stack and, in recent versions, refuses a Stratum line over 16 KiB; one
# firmware keeps coinb2 in a fixed 4,096-byte buffer. 1,900 bytes fits both with defaults;
# raise it only together with the node's -blockreservedweight (>= 4 x this + 400).
COINBASE_MAX_BYTES = 1900


@dataclass(frozen=True, slots=True)
class AccountingSettings:
    """How pooled work is paid (hashfarm.accounting; docs/accounting.md).

    Off by default: the pool then builds its coinbase as before (pooled mode: all to
    payout_address) and nothing reads these keys. `scheme` is what the pool notes as the
    operator's scheme; a change takes effect at the next block found (docs/accounting.md).
    """

    enabled: bool = False  # True: the pool applies the scheme (TIDES: outputs in the coinbase)
    scheme: SchemeName = "pplns"  # solo, prop, pplns, tides (paid in the coinbase), pps, fpps
    fee_bps: int = 0  # pool fee in basis points (100 = 1%), rounded down in the pool's favour
    pplns_factor: float = 2.0  # PPLNS window in network difficulties (Miningcore's default)
    tides_factor: float = 8.0  # TIDES window in network difficulties (OCEAN's: 8)
    dust_sats: int = 1_048_576  # TIDES: smaller payments are held, paid in a later coinbase
    max_outputs: int = 500  # TIDES: coinbase outputs at most, the pool's own included
    coinbase_max_bytes: int = COINBASE_MAX_BYTES  # TIDES: non-witness coinbase size at most
    payout_threshold_sats: int = 1_000_000  # custodial: paid from this much (= payouts' default)
    reserve_warning_sats: int = 0  # PPS/FPPS: warn when the pool's reserve falls below this

    def to_scheme(self) -> AcctScheme:
        """The accounting `Scheme` these settings describe (hashfarm.accounting.schemes)."""
        from fractions import Fraction

        from hashfarm.accounting.money import Fee
        from hashfarm.accounting.schemes import Pplns, Pps, Prop, Solo, Tides

        fee = Fee.bps(self.fee_bps)
        if self.scheme == "solo":
            return Solo(fee)
        if self.scheme == "prop":
            return Prop(fee)
        if self.scheme == "pplns":
            return Pplns(fee, Fraction(self.pplns_factor).limit_denominator(1000))
        if self.scheme == "tides":
            factor = Fraction(self.tides_factor).limit_denominator(1000)
            return Tides(fee, factor, self.dust_sats, self.max_outputs)
        return Pps(fee, full=self.scheme == "fpps")


Role = Literal["all", "stratum", "ledger"]


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Several Stratum front ends and one ledger on a broker (docs/scale-out.md).

    `all` (the default) is the single process: embedded ledger, no broker, and nothing here
    is read. `stratum` serves miners and publishes accepted shares and blocks to the broker
    (a share is answered once the broker or the local spool holds it); `ledger` consumes
    them into PostgreSQL (`storage.url`) and runs the accounting service.
    """

    role: Role = "all"  # all: one process as before; stratum: a front end; ledger: the writer
    frontend_id: int | None = None  # 0..255, unique per front end: extranonce1's top byte
    broker_url: str = "nats://127.0.0.1:4222"  # the NATS JetStream server(s), comma-separated
    stream: str = "hashfarm"  # JetStream stream holding the shares and blocks
    subject_prefix: str = "hashfarm"  # subjects: PREFIX.shares, PREFIX.blocks
    spool_dir: str = "hashfarm-spool"  # front end: where shares wait (fsynced) for the broker
    spool_max_bytes: int = 1 << 30  # front end: spool size at most; beyond, shares refused
    max_in_flight: int = 10_000  # front end: publishes awaiting the broker's ack at most
    durable: str = "hashfarm-ledger"  # ledger: the durable consumer's name
    fetch_batch: int = 512  # ledger: deliveries fetched (and committed) per transaction
    lease: bool = True  # front end: lease frontend_id in the broker (False: a test's twin ids)
    lease_ttl: float = 15.0  # front end: seconds its frontend_id lease outlives its last renewal


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Everything `hashfarm pool` can be told, with defaults for a local regtest node."""

    network: str = "regtest"  # chain the node runs: mainnet, testnet, testnet4, signet, regtest
    mode: Mode = "solo"  # solo: username is the payout address; pooled: pays payout_address
    payout_address: str | None = None  # pooled mode: the pool's address (required there)
    pool_tag: str = "/hashfarm/"  # ASCII tag in every coinbase scriptSig
    fee_percent: float = 0.0  # solo: share of the reward paid to fee_address (0..100)
    fee_address: str | None = None  # solo: address of the optional pool fee output
    node: NodeSettings = field(default_factory=NodeSettings)  # node connection and watching
    stratum: StratumSettings = field(default_factory=StratumSettings)  # Stratum listener
    vardiff: VardiffSettings = field(default_factory=VardiffSettings)  # share difficulty
    storage: StorageSettings = field(default_factory=StorageSettings)  # share/block ledger
    http: HttpSettings = field(default_factory=HttpSettings)  # API and metrics
    bans: BanSettings = field(default_factory=BanSettings)  # automatic Stratum bans by IP
    blocks: BlockSettings = field(default_factory=BlockSettings)  # block-candidate submission
    accounting: AccountingSettings = field(default_factory=AccountingSettings)  # payouts
    cluster: ClusterSettings = field(default_factory=ClusterSettings)  # roles, broker

    def validate(self) -> PoolSettings:
        """Raise ConfigError naming the first key whose value cannot work; return self."""
        for key, ok in _checks(self):
            if not ok:
                hint = _HINTS.get(key, "")
                raise ConfigError(f"invalid setting {key}: {_value_of(self, key)!r}{hint}")
        return self


def _checks(s: PoolSettings) -> list[tuple[str, bool]]:
    st, vd, nd, ac, cl = s.stratum, s.vardiff, s.node, s.accounting, s.cluster
    return [
        ("mode", s.mode in ("solo", "pooled")),
        ("payout_address", s.mode != "pooled" or bool(s.payout_address)),
        ("fee_percent", 0.0 <= s.fee_percent < 100.0),
        ("fee_address", s.fee_percent == 0.0 or bool(s.fee_address)),
        ("pool_tag", s.pool_tag.isascii() and len(s.pool_tag) <= 40),
        ("stratum.port", 0 <= st.port <= 65535),
        ("stratum.extranonce2_size", 4 <= st.extranonce2_size <= 8),
        ("stratum.max_line", st.max_line >= 1024),
        ("stratum.jobs_kept", st.jobs_kept >= 2),
        ("stratum.version_mask", 0 <= st.version_mask <= 0xFFFFFFFF),
        ("stratum.ntime_future", st.ntime_future >= 0),
        ("stratum.ntime_past", st.ntime_past >= 0),
        ("stratum.max_line_unauthorized", 256 <= st.max_line_unauthorized <= st.max_line),
        ("stratum.max_connections_per_ip", st.max_connections_per_ip >= 1),
        ("stratum.max_unauthorized_per_ip", st.max_unauthorized_per_ip >= 1),
        ("stratum.max_workers", st.max_workers >= 1),
        ("stratum.max_output", st.max_output >= 65_536),
        ("stratum.lines_per_turn", st.lines_per_turn >= 1),
        ("stratum.lines_per_second", st.lines_per_second >= 1.0),
        ("stratum.get_transactions", st.get_transactions in ("txids", "off")),
        ("stratum.get_transactions_interval", st.get_transactions_interval >= 0.0),
        ("stratum.proxy_protocol_from", _sources_ok(st.proxy_protocol_from)),
        ("stratum.proxy_protocol_timeout", 0.0 < st.proxy_protocol_timeout <= 60.0),
        ("bans.seconds", s.bans.seconds > 0.0),
        ("bans.window", s.bans.window > 0.0),
        ("bans.junk_lines", s.bans.junk_lines >= 1),
        ("bans.failed_authorizations", s.bans.failed_authorizations >= 1),
        ("bans.share_window", s.bans.share_window > 0.0),
        ("bans.invalid_ratio", 0.0 < s.bans.invalid_ratio <= 1.0),
        ("bans.invalid_min_shares", s.bans.invalid_min_shares >= 1),
        ("bans.max_tracked_ips", s.bans.max_tracked_ips >= 16),
        ("vardiff.minimum", vd.minimum is None or vd.minimum > 0.0),
        ("vardiff.maximum", vd.maximum >= vd.floor(s.network)),
        ("vardiff.initial", vd.initial > 0.0),
        ("vardiff.target_interval", vd.target_interval > 0.0),
        ("vardiff.retarget_shares", vd.retarget_shares >= 1),
        ("vardiff.retarget_time", vd.retarget_time > 0.0),
        ("vardiff.tolerance", 0.0 <= vd.tolerance < 1.0),
        ("vardiff.max_step", vd.max_step > 1.0),
        ("node.poll_interval", 0.0 < nd.poll_interval <= 1.0),
        ("node.refresh_interval", 0.0 < nd.refresh_interval <= 55.0),
        ("node.retry_max", nd.retry_max > 0.0),
        # a password from two places is a mistake worth stopping for, not a guess
        ("node.rpc_password_file", nd.rpc_password_file is None or nd.rpc_password is None),
        ("http.port", 0 <= s.http.port <= 65535),
        ("http.admin_token_file", s.http.admin_token_file != ""),
        ("http.admin_port", 0 <= s.http.admin_port <= 65535),
        ("http.admin_password_file", s.http.admin_password_file != ""),
        ("storage.batch_max", s.storage.batch_max >= 1),
        ("storage.queue_max", s.storage.queue_max >= 1),
        ("blocks.queue_per_height", s.blocks.queue_per_height >= 1),
        ("blocks.queue_max", s.blocks.queue_max >= s.blocks.queue_per_height),
        ("blocks.submit_patience", s.blocks.submit_patience > 0.0),
        ("blocks.stop_drain", s.blocks.stop_drain >= 0.0),
        ("accounting.scheme", ac.scheme in ("solo", "prop", "pplns", "tides", "pps", "fpps")),
        ("accounting.fee_bps", 0 <= ac.fee_bps < 10_000),
        ("accounting.pplns_factor", 0.0 < ac.pplns_factor <= 1000.0),
        ("accounting.tides_factor", 0.0 < ac.tides_factor <= 1000.0),
        ("accounting.dust_sats", ac.dust_sats >= 1),
        ("accounting.max_outputs", 1 <= ac.max_outputs <= 10_000),
        # room for the fixed parts and at least the pool's output and one miner's
        ("accounting.coinbase_max_bytes", 1000 <= ac.coinbase_max_bytes <= 1_000_000),
        ("accounting.payout_threshold_sats", ac.payout_threshold_sats >= 1),
        ("accounting.reserve_warning_sats", ac.reserve_warning_sats >= 0),
        # TIDES pays miners' addresses in the pool's coinbase: pooled mode only
        ("accounting.enabled", not ac.enabled or s.mode == "pooled"),
        ("cluster.role", cl.role in ("all", "stratum", "ledger")),
        # a front end's extranonce1 values and job ids carry its id: two must never share one
        ("cluster.frontend_id", _frontend_id_ok(cl)),
        # TIDES plans the coinbase from the database (a front end has none): a scaled-out
        # pool credits PPLNS, PROP, SOLO, PPS or FPPS (job terms cross the broker)
        ("cluster.role", cl.role == "all" or not (ac.enabled and ac.scheme == "tides")),
        # the ledger role stores in PostgreSQL: several hosts and the accounting share it
        ("storage.url", cl.role != "ledger" or s.storage.url.startswith("postgres")),
        ("cluster.broker_url", bool(cl.broker_url)),
        ("cluster.stream", cl.stream.replace("_", "").replace("-", "").isalnum()),
        ("cluster.subject_prefix", cl.subject_prefix.replace("_", "").replace("-", "").isalnum()),
        ("cluster.spool_max_bytes", cl.spool_max_bytes >= 1 << 20),
        ("cluster.max_in_flight", cl.max_in_flight >= 1),
        ("cluster.durable", cl.durable.replace("_", "").replace("-", "").isalnum()),
        ("cluster.fetch_batch", 1 <= cl.fetch_batch <= 10_000),
        ("cluster.lease_ttl", 1.0 <= cl.lease_ttl <= 600.0),
    ]


# What to do about a refused cluster key (the scale-out roles are new to most operators).
_HINTS = {
    "stratum.proxy_protocol_from": " (comma-separated load balancer addresses or networks: "
    '"10.0.0.5, 10.0.1.0/24")',
    "cluster.frontend_id": " (a front end, --role stratum, needs --frontend-id 0..255, "
    "unique among the pool's front ends)",
    "storage.url": " (the ledger role writes PostgreSQL: --db postgresql://...)",
    "cluster.role": " (a scaled-out pool credits pplns, prop, solo, pps or fpps: TIDES "
    "needs the single process, docs/scale-out.md)",
}


def _sources_ok(text: str) -> bool:
    """Every comma-separated item an IP address or a network (10.0.1.0/24)."""
    try:
        parse_sources(text)
    except ValueError:
        return False
    return True


def _frontend_id_ok(cl: ClusterSettings) -> bool:
    """A front end needs an id in 0..255; other roles may carry one (ignored)."""
    if cl.frontend_id is None:
        return cl.role != "stratum"
    return 0 <= cl.frontend_id <= 255


def _value_of(s: PoolSettings, dotted: str) -> object:
    obj: object = s
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def setting_keys() -> list[str]:
    """Every dotted key of PoolSettings (for config loaders and docs)."""
    keys: list[str] = []
    for f in fields(PoolSettings):
        sub = f.default_factory() if callable(f.default_factory) else None
        if sub is not None and hasattr(sub, "__dataclass_fields__"):
            keys.extend(f"{f.name}.{g.name}" for g in fields(sub))
        else:
            keys.append(f.name)
    return keys
