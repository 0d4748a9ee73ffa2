"""A front end's lease on its `frontend_id`: a JetStream key-value entry, expiring unless renewed.

Two running front ends with one id would hand out the same extranonce1 values and job ids
(pool/server.py, ExtranonceAllocator): two miners could then make the same header. So a
front end takes the key `frontend-N` in the bucket `<stream>-frontends` before it serves:

* **take**: `create` (only when the key is absent: the broker's compare-and-set) with the
  holder's identity (host, pid, process start, a random token, its Stratum address);
* **renew**: every ttl/3 an `update` that names the revision it last wrote, so a renewal
  never overwrites another holder's entry;
* **expiry**: the bucket's TTL (`max_age`) removes an entry not renewed for `ttl` seconds,
  so a front end killed with SIGKILL frees its id within `ttl`. A stale entry whose holder
  ran on this host and is gone (no such pid, or another process start) is taken over at once
  (a supervisor's restart after kill -9 need not wait);
* **refusal**: while another live holder renews the key, `acquire` waits at most one `ttl`
  (a holder that just died) and then raises `LeaseHeld` naming the holder.

A broker that is away at start does not stop a front end (it spools shares meanwhile, and
must keep acknowledging them): `acquire` gives up after `connect_wait` and the lease is taken
in the background once the broker answers. If by then another front end holds the id, or
after a partition longer than `ttl` another one took it, `lost` is set and the front end
must stop (cli/pool.py does). Why a broker KV and not a PostgreSQL advisory lock held by
the ledger: the front end already depends on the broker (not on PostgreSQL), and the lease
must outlive a ledger restart; docs/scale-out.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from nats.aio.client import Client
from nats.js import api as js_api
from nats.js import errors as js_errors
from nats.js.kv import KeyValue

from hashfarm.broker.stream import server_list
from hashfarm.errors import BrokerError

log = logging.getLogger(__name__)


class LeaseHeld(BrokerError):
    """Another running front end holds this front end's id."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease: what the entry says."""

    host: str
    pid: int
    started: str  # the process's start (field 22 of /proc/PID/stat): tells a reused pid apart
    token: str  # random per process: this lease's own entries
    stratum: str  # the holder's Stratum address, for the operator
    since: float  # UNIX time it took the lease

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"pid {self.pid} on {self.host} (stratum {self.stratum}, since {when})"

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "host": self.host,
                "pid": self.pid,
                "started": self.started,
                "token": self.token,
                "stratum": self.stratum,
                "since": self.since,
            }
        )

    @classmethod
    def decode(cls, data: bytes | None) -> Holder | None:
        try:
            d = orjson.loads(data or b"")
            return cls(
                str(d["host"]), int(d["pid"]), str(d["started"]), str(d["token"]),
                str(d["stratum"]), float(d["since"]),
            )  # fmt: skip
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def gone(self) -> bool:
        """True when this holder ran on this host and its process is no longer there."""
        if self.host != socket.gethostname():
            return False  # another host: only the TTL can tell
        return process_start(self.pid) != self.started


def process_start(pid: int) -> str:
    """The start time of process `pid` in clock ticks since boot, or "" when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return ""
    fields = stat[stat.rfind(b")") + 2 :].split()  # after "(comm)", which may hold spaces
    return fields[19].decode() if len(fields) > 19 else ""


class FrontendLease:
    """The lease on `frontend-<frontend_id>`; `lost` is set when the front end must stop."""

    def __init__(
        self,
        servers: str,
        bucket: str,
        frontend_id: int,
        *,
        stratum: str = "",
        ttl: float = 15.0,
        name: str = "",
    ) -> None:
        self.servers = servers
        self.bucket = bucket
        self.key = f"frontend-{frontend_id}"
        self.ttl = ttl
        self.name = name or f"hashfarm-lease-{frontend_id}"
        pid = os.getpid()
        self.me = Holder(socket.gethostname(), pid, process_start(pid), secrets.token_hex(8),
                         stratum, time.time())  # fmt: skip
        self.held = False  # the broker has our entry (as far as the last renewal knows)
        self.lost = asyncio.Event()  # another front end holds the id: stop serving
        self.lost_reason = ""
        self._revision = 0
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    # -- taking -------------------------------------------------------------------------------

    async def acquire(self, connect_wait: float = 3.0) -> None:
        """Take the lease, waiting at most one `ttl` for a previous holder's entry to expire;
        LeaseHeld when another live front end holds it. A broker that does not answer within
        `connect_wait` seconds: return without the lease and take it in the background."""
        try:
            await asyncio.wait_for(self._open(), connect_wait)
        except Exception as exc:  # no broker now (or a timeout): keep trying in the background
            why = str(exc) or type(exc).__name__
            log.warning(
                "broker %s away (%s): front end %s starts without its lease and takes it "
                "when the broker answers",
                self.servers,
                why,
                self.key,
            )
            await self._drop_connection()
            self._task = asyncio.ensure_future(self._keep())
            return
        deadline = time.monotonic() + self.ttl + 1.0
        holder = await self._try_take()
        while holder is not None:
            if time.monotonic() >= deadline:
                await self.close()
                raise LeaseHeld(self._held_message(holder))
            log.info("%s is held by %s: waiting up to %.0f s for it to expire", self.key,
                     holder.describe(), deadline - time.monotonic())  # fmt: skip
            await asyncio.sleep(min(1.0, self.ttl / 3))
            holder = await self._try_take()
        self._task = asyncio.ensure_future(self._keep())

    def _held_message(self, holder: Holder) -> str:
        return (
            f"cluster.frontend_id {self.key.split('-')[-1]} is in use by another running front "
            f"end: {holder.describe()}; give each front end its own --frontend-id (extranonce1 "
            f"ranges and job ids would collide), or stop that one (its lease expires "
            f"{self.ttl:g} s after it stops renewing)"
        )

    async def _open(self) -> None:
        nc = Client()
        self._nc = nc
        await nc.connect(
            server_list(self.servers),
            name=self.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            connect_timeout=2,
            ping_interval=2,
            max_outstanding_pings=2,
            allow_reconnect=True,
        )
        js = nc.jetstream(timeout=2.0)
        try:
            self._kv = await js.key_value(self.bucket)
        except js_errors.BucketNotFoundError:
            config = js_api.KeyValueConfig(
                bucket=self.bucket,
                description="hashfarm front ends' frontend_id leases",
                history=1,
                ttl=self.ttl,
                storage=js_api.StorageType.FILE,
            )
            try:
                self._kv = await js.create_key_value(config)
            except js_errors.BadRequestError:  # another front end created it meanwhile
                self._kv = await js.key_value(self.bucket)

    async def _drop_connection(self) -> None:
        nc, self._nc, self._kv = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _try_take(self) -> Holder | None:
        """Create our entry, or take over a holder that is gone: None once held, else the
        live holder."""
        kv = self._kv
        assert kv is not None
        try:
            self._revision = await kv.create(self.key, self.me.encode())
            self.held = True
            log.info("%s leased to this process (ttl %g s)", self.key, self.ttl)
            return None
        except js_errors.KeyWrongLastSequenceError:
            pass
        try:
            entry = await kv.get(self.key)
        except js_errors.KeyNotFoundError:
            return await self._try_take_again()
        holder = Holder.decode(entry.value)
        if holder is not None and holder.token == self.me.token:  # ours (a lost reply)
            self._revision, self.held = entry.revision or 0, True
            return None
        if holder is None or holder.gone():
            why = "unreadable" if holder is None else f"{holder.describe()} is gone"
            try:
                self._revision = await kv.update(self.key, self.me.encode(), last=entry.revision)
            except js_errors.KeyWrongLastSequenceError:
                return await self._try_take_again()
            self.held = True
            log.info("%s taken over (%s)", self.key, why)
            return None
        return holder

    async def _try_take_again(self) -> Holder | None:
        """The entry changed under us (expired, or another taker): one more look."""
        kv = self._kv
        assert kv is not None
        try:
            self._revision = await kv.create(self.key, self.me.encode())
        except js_errors.KeyWrongLastSequenceError:
            entry = await kv.get(self.key)
            return Holder.decode(entry.value) or self.me  # a race: count it as held
        self.held = True
        return None

    # -- keeping ------------------------------------------------------------------------------

    async def _keep(self) -> None:
        """Renew every ttl/3; (re)connect and take the lease while the broker was away."""
        period = self.ttl / 3
        while not self.lost.is_set():
            try:
                if self._kv is None:
                    await asyncio.wait_for(self._open(), 5.0)
                if not self.held:
                    holder = await self._try_take()
                    if holder is not None:
                        self._lose(self._held_message(holder))
                        return
                else:
                    await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker away or slow: try again next period
                log.debug("%s renewal: %s", self.key, exc)
                if self._nc is None or self._nc.is_closed:
                    await self._drop_connection()
            await asyncio.sleep(period)

    async def _renew(self) -> None:
        kv = self._kv
        assert kv is not None
        try:
            self._revision = await kv.update(self.key, self.me.encode(), last=self._revision)
            return
        except js_errors.KeyWrongLastSequenceError:
            pass
        # our entry expired (a partition longer than ttl) or another front end took the id
        self.held = False
        holder = await self._try_take()
        if holder is None:
            log.warning("%s lease had expired (broker away longer than %g s): taken again",
                        self.key, self.ttl)  # fmt: skip
            return
        self._lose(self._held_message(holder))

    def _lose(self, why: str) -> None:
        self.held = False
        self.lost_reason = why
        log.error("lost the front end lease: %s", why)
        self.lost.set()

    async def close(self) -> None:
        """Stop renewing and delete our entry (the next holder need not wait for the TTL)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.held and self._kv is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._kv.delete(self.key, last=self._revision), 2.0)
            self.held = False
        await self._drop_connection()
