"""`/health` for every role of `hashfarm pool`, and the broker's Prometheus lines.

`GET /health` answers JSON `{"status", "role", "broker_connected", "spool_messages",
"spool_bytes", "in_flight", "lag", "node_reachable", ...}`, status 200 while the process does
its job and 503 when it cannot (a load balancer's check takes a front end out on 503):

* `all` (the single process) and `stratum` (a front end): 503 when the node is unreachable
  (no new work, no block submission). A front end whose broker is away still answers 200
  with `"status": "degraded"`: it acknowledges shares from its fsynced spool.
* `ledger`: 503 while the broker is unreachable (nothing is being written); `lag` is the
  messages its durable consumer has not yet acked.

The pool's API mounts it with `add_routes(app, MODEL_KEY)`; the ledger role, which has no
Stratum read model, serves it (and `/metrics`) with `HealthServer`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from hashfarm.pool.ledgerrole import LedgerRole
from hashfarm.pool.shareflow import BrokerLedger

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus text format
Doc = dict[str, Any]


def pool_health(pool: Any) -> tuple[int, Doc]:
    """(HTTP status, document) of a pool process (`all` or `stratum`)."""
    settings = getattr(pool, "settings", None)
    role = settings.cluster.role if settings is not None else "all"
    watcher = getattr(pool, "watcher", None)
    node_up = bool(getattr(watcher, "node_up", False))
    doc: Doc = {
        "role": role,
        "node_reachable": node_up,
        "broker_connected": None,
        "spool_messages": None,
        "spool_bytes": None,
        "in_flight": None,
        "lag": None,
        "connections": len(pool.sessions()),
    }
    degraded = False
    ledger = getattr(pool, "ledger", None)
    if isinstance(ledger, BrokerLedger):
        st = ledger.publisher.stats()
        doc |= {
            "frontend_id": settings.cluster.frontend_id if settings is not None else None,
            "broker_connected": bool(st.connected),
            "spool_messages": st.spool_messages,
            "spool_bytes": st.spool_bytes,
            "in_flight": st.in_flight,
            "publish_p50_ms": round(st.publish_p50_ms, 3),
            "publish_p99_ms": round(st.publish_p99_ms, 3),
            "shares_refused": ledger.shares_refused,
        }
        degraded = not st.connected or st.spool_messages > 0
    else:
        pending = getattr(ledger, "shares_pending", None)
        doc["ledger_pending"] = pending
    doc["status"] = "down" if not node_up else "degraded" if degraded else "ok"
    return (200 if node_up else 503), doc


def ledger_health(role: LedgerRole) -> tuple[int, Doc]:
    """(HTTP status, document) of the ledger role."""
    s = role.stats
    doc: Doc = {
        "role": "ledger",
        "broker_connected": s.broker_connected,
        "lag": s.lag,
        "lag_read_at": s.lag_read_at or None,  # UNIX time of the lag reading (every 2 s)
        "spool_messages": None,
        "spool_bytes": None,
        "node_reachable": None,
        "batches": s.batches,
        "shares": s.shares,
        "blocks": s.blocks,
        "duplicates_skipped": role.duplicates_skipped,
        "unreadable": s.unreadable,
        "failed_batches": s.failed_batches,
        "last_commit_age_s": round(time.time() - s.last_commit, 3) if s.last_commit else None,
        "ledger_pending": role.ledger.shares_pending,
        "terms": s.terms,
        "terms_ignored": s.terms_ignored,
        "shares_held": s.shares_held,  # PPS/FPPS shares waiting for their job's terms
        "held_total": s.held_total,
        "released_without_terms": s.released_without_terms,
    }
    doc["status"] = "ok" if s.broker_connected else "down"
    return (200 if s.broker_connected else 503), doc


def pool_metrics(pool: Any) -> str:
    """Prometheus lines for a front end's broker and spool ("" for the single process)."""
    ledger = getattr(pool, "ledger", None)
    if not isinstance(ledger, BrokerLedger):
        return ""
    st = ledger.publisher.stats()
    return _lines(
        [
            ("hashfarm_broker_connected", "gauge", "1 while the broker connection is up.",
             [("", int(st.connected))]),
            ("hashfarm_broker_spool_messages", "gauge", "Shares and blocks waiting in the "
             "front end's spool for the broker.", [("", st.spool_messages)]),
            ("hashfarm_broker_spool_bytes", "gauge", "Bytes of the spool's waiting records.",
             [("", st.spool_bytes)]),
            ("hashfarm_broker_in_flight", "gauge", "Messages awaiting the broker's ack.",
             [("", st.in_flight)]),
            ("hashfarm_broker_publish_latency_ms", "gauge", "Publish-to-durable latency of "
             "recent messages.", [('quantile="0.5"', st.publish_p50_ms),
                                  ('quantile="0.99"', st.publish_p99_ms)]),
            ("hashfarm_broker_messages", "counter", "Messages made durable, by how.",
             [('via="broker"', st.acked), ('via="spool"', st.spooled),
              ('via="replay"', st.replayed), ('via="refused"', st.refused)]),
        ]
    )  # fmt: skip


def ledger_metrics(role: LedgerRole) -> str:
    """Prometheus lines of the ledger role: the consumer's lag and what was written."""
    s = role.stats
    return _lines(
        [
            ("hashfarm_ledger_broker_lag_messages", "gauge", "Messages the ledger's durable "
             "consumer has not acked (-1: unknown).", [("", -1 if s.lag is None else s.lag)]),
            ("hashfarm_ledger_broker_connected", "gauge", "1 while the broker answers.",
             [("", int(s.broker_connected))]),
            ("hashfarm_ledger_shares", "counter", "Share deliveries committed.",
             [("", s.shares)]),
            ("hashfarm_ledger_duplicates_skipped", "counter", "Shares whose id was already "
             "stored (redeliveries, replays, one header sent twice).",
             [("", role.duplicates_skipped)]),
            ("hashfarm_ledger_blocks", "counter", "Block deliveries committed.",
             [("", s.blocks)]),
            ("hashfarm_ledger_unreadable", "counter", "Messages dropped as unreadable.",
             [("", s.unreadable)]),
            ("hashfarm_ledger_job_terms", "counter", "Job terms deliveries committed.",
             [("", s.terms)]),
            ("hashfarm_ledger_shares_held", "gauge", "PPS/FPPS shares waiting (unacked) for "
             "their job's terms.", [("", s.shares_held)]),
            ("hashfarm_ledger_shares_released_without_terms", "counter", "Shares written "
             "without their job's terms after the wait ran out (not priced).",
             [("", s.released_without_terms)]),
        ]
    )  # fmt: skip


def _lines(families: list[tuple[str, str, str, list[tuple[str, float | int]]]]) -> str:
    out: list[str] = []
    for name, kind, help_text, samples in families:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        out += [f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"
                for labels, value in samples]  # fmt: skip
    return "\n".join(out) + "\n"


def add_routes(app: web.Application, model_key: web.AppKey[Any]) -> None:
    """Mount `GET /health` on the pool's API (its read model's pool is the probe)."""

    async def health(request: web.Request) -> web.Response:
        status, doc = pool_health(request.app[model_key].pool)
        return _json(status, doc)

    app.router.add_get("/health", health)


def _json(status: int, doc: Doc) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


class HealthServer:
    """`/health` and `/metrics` alone, for a role without the pool's API (the ledger)."""

    def __init__(
        self,
        host: str,
        port: int,
        health: Callable[[], tuple[int, Doc]],
        metrics: Callable[[], str],
    ) -> None:
        self._health, self._metrics = health, metrics
        app = web.Application()
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/metrics", self._get_metrics)
        self._runner = web.AppRunner(app, access_log=None)
        self._host, self.port = host, port

    async def start(self) -> int:
        """Listen; return the bound port."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("health on http://%s:%d/health and /metrics", self._host, self.port)
        return self.port

    async def stop(self) -> None:
        """Close the listener."""
        await self._runner.cleanup()

    async def _get_health(self, request: web.Request) -> web.Response:
        status, doc = self._health()
        return _json(status, doc)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self._metrics(), headers={"Content-Type": CONTENT_TYPE})
