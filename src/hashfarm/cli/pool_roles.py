"""`hashfarm pool --role stratum|ledger`: the scaled-out pool's two roles (docs/scale-out.md).

Imported only for those roles, so the single process (`--role all`, the default) never loads
the broker's client library. A front end (`stratum`) is the ordinary pool with a
`BrokerLedger` in place of its database; the ledger (`ledger`) is this module's
`serve_ledger`: a durable consumer, the pool's PostgreSQL ledger in its idempotent mode, the
accounting service when `[accounting] enabled` (pooled), and `/health` and `/metrics` on
`http.port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING

from hashfarm.api.health import HealthServer, ledger_health, ledger_metrics
from hashfarm.broker import Consumer, FrontendLease, Publisher
from hashfarm.pool.ledgerrole import LedgerRole
from hashfarm.pool.settings import PoolSettings
from hashfarm.pool.shareflow import BrokerLedger, subjects
from hashfarm.pool.storage.postgres import PostgresLedger

if TYPE_CHECKING:
    from hashfarm.cli.pool import NodeAccess

log = logging.getLogger("hashfarm.cli.pool")


def spool_dir(settings: PoolSettings) -> Path:
    """This front end's own spool: `cluster.spool_dir`/frontend-N (never shared by two)."""
    return Path(settings.cluster.spool_dir) / f"frontend-{settings.cluster.frontend_id}"


async def acquire_lease(settings: PoolSettings) -> FrontendLease:
    """This front end's lease on its `cluster.frontend_id` (broker/lease.py): LeaseHeld
    (a HashfarmError: one line, exit 1) when another running front end holds the id. Taken
    before the Stratum listener opens, so two front ends never serve with one id."""
    cl, st = settings.cluster, settings.stratum
    assert cl.frontend_id is not None
    lease = FrontendLease(cl.broker_url, f"{cl.stream}-frontends", cl.frontend_id,
                          stratum=f"{st.host}:{st.port}", ttl=cl.lease_ttl)  # fmt: skip
    await lease.acquire()
    return lease


async def open_broker_ledger(settings: PoolSettings) -> BrokerLedger:
    """A front end's ledger: connected to the broker, or spooling until it answers."""
    cl = settings.cluster
    publisher = Publisher(
        cl.broker_url,
        cl.stream,
        list(subjects(cl.subject_prefix)),
        spool_dir(settings),
        name=f"hashfarm-frontend-{cl.frontend_id}",
        spool_max_bytes=cl.spool_max_bytes,
        max_in_flight=cl.max_in_flight,
    )
    pooled = settings.network if settings.mode == "pooled" else None  # publishes job terms
    ledger = BrokerLedger(publisher, cl.subject_prefix, network=pooled, frontend_id=cl.frontend_id)
    await ledger.start()
    return ledger


async def serve_ledger(settings: PoolSettings, stop: asyncio.Event, *, access: NodeAccess) -> None:
    """Run the ledger role until `stop` is set; the batch in progress is committed first."""
    cl, st = settings.cluster, settings.storage
    async with contextlib.AsyncExitStack() as stack:
        db = PostgresLedger(
            st.url,
            batch_max=max(st.batch_max, cl.fetch_batch),
            batch_wait=st.batch_wait,
            queue_max=max(st.queue_max, 4 * cl.fetch_batch),
            idempotent=True,
        )
        await db.start()
        stack.push_async_callback(db.close)
        consumer = Consumer(cl.broker_url, cl.stream, cl.durable, list(subjects(cl.subject_prefix)))
        stack.push_async_callback(consumer.close)
        role = LedgerRole(consumer, db, subject_prefix=cl.subject_prefix, batch=cl.fetch_batch)
        if settings.mode == "pooled" and settings.accounting.enabled:
            from hashfarm.pool.accountant import Accountant, NodeLogin  # numpy: only then

            login = NodeLogin(access.url, access.user, access.password, access.cookie,
                              settings.node.rpc_timeout)  # fmt: skip
            accountant = Accountant(settings, login)  # crediting of the found blocks
            await accountant.start()
            stack.push_async_callback(accountant.close)
            role.use_terms(accountant.recorder, hold=settings.accounting.scheme in ("pps", "fpps"))
        if settings.http.port:
            health = HealthServer(
                settings.http.host,
                settings.http.port,
                lambda: ledger_health(role),
                lambda: ledger_metrics(role),
            )
            await health.start()  # /health says 503 while the broker is still awaited
            stack.push_async_callback(health.stop)
        if not await until_stopped(consumer.start(), stop):  # waits for an absent broker
            log.warning("stopped before the ledger was ready (waiting for the broker)")
            return
        log.info("ledger ready: consuming %s.* from %s (durable %s) into %s", cl.subject_prefix,
                 cl.stream, cl.durable, st.url.split("@")[-1])  # fmt: skip
        await role.run(stop)
        log.info("stopping")


async def until_stopped(start: Awaitable[None], stop: asyncio.Event) -> bool:
    """Await `start` unless `stop` is set first (then cancel it): True once it is done."""
    starting = asyncio.ensure_future(start)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return False
    starting.result()  # a failed start raises here
    return True
