"""The ledger side: a durable JetStream pull consumer with explicit acks.

A delivery that is not acked within `ack_wait` (the ledger died before committing it) is
delivered again, to this or another process bound to the same durable consumer, so whoever
consumes must be idempotent on `msg_id` (the ledger's unique share id).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from hashfarm.broker.publisher import MSG_ID_HEADER
from hashfarm.broker.stream import StreamLimits, ensure_stream, server_list
from hashfarm.errors import BrokerError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as the consumer sees it."""

    subject: str
    msg_id: str  # the publisher's idempotent id (Nats-Msg-Id)
    payload: bytes
    delivered: int = 1  # how many times the broker has delivered it (>1: a redelivery)
    _msg: Any = field(default=None, repr=False, compare=False)


class Consumer:
    """A durable pull consumer of `subjects` in `stream` (created if missing)."""

    def __init__(
        self,
        servers: str,
        stream: str,
        durable: str,
        subjects: list[str],
        *,
        ack_wait: float = 30.0,
        max_ack_pending: int = 100_000,
        limits: StreamLimits | None = None,
    ) -> None:
        self.servers = servers
        self.stream = stream
        self.durable = durable
        self.subjects = list(subjects)
        self.ack_wait = ack_wait  # seconds before an unacked delivery is delivered again
        self.max_ack_pending = max_ack_pending  # deliveries out without an ack at most
        self.limits = limits or StreamLimits()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._warned = False

    async def start(self) -> None:
        """Connect (retrying until the broker answers: wrap it in a timeout to bound the
        wait), create the stream and the durable consumer if they do not exist, bind to it."""
        nc = Client()
        self._nc = nc
        try:
            await nc.connect(
                server_list(self.servers),
                name=f"{self.stream}.{self.durable}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=2,
                error_cb=self._on_error,
            )
            self._js = js = nc.jetstream()
            await ensure_stream(js, self.stream, self.subjects, self.limits)
            await self._ensure_consumer(js)
            self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        except nats.errors.Error as exc:
            raise BrokerError(f"consumer {self.durable} on {self.stream}: {exc}") from exc

    async def _ensure_consumer(self, js: JetStreamContext) -> None:
        config = js_api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending,
        )
        stream_subjects = (await js.stream_info(self.stream)).config.subjects or []
        if sorted(self.subjects) != sorted(stream_subjects):
            if len(self.subjects) == 1:  # a single filter works on every 2.x server
                config.filter_subject = self.subjects[0]
            else:  # several filters need nats-server 2.10 or later
                config.filter_subjects = self.subjects
        try:
            await js.consumer_info(self.stream, self.durable)
        except js_errors.NotFoundError:
            await js.add_consumer(self.stream, config)

    async def _on_error(self, exc: Exception) -> None:
        if self._sub is None and not self._warned:  # still starting: say what it waits for
            self._warned = True
            log.warning("consumer %s: waiting for the broker %s (%s)", self.durable,
                        self.servers, exc)  # fmt: skip
        else:
            log.debug("broker %s: %s", self.servers, exc)

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:  # noqa: ASYNC109
        """Up to `batch` deliveries, waiting at most `timeout` seconds; [] when none came."""
        if self._sub is None:
            raise BrokerError("consumer not started")
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except nats.errors.Error as exc:
            raise BrokerError(f"fetch from {self.stream}/{self.durable}: {exc}") from exc
        return [self._delivery(m) for m in msgs]

    @staticmethod
    def _delivery(msg: Any) -> Delivery:
        headers = msg.headers or {}
        try:
            delivered = msg.metadata.num_delivered
        except Exception:  # not a JetStream message (cannot happen on a pull consumer)
            delivered = 1
        return Delivery(msg.subject, headers.get(MSG_ID_HEADER, ""), msg.data, delivered, msg)

    async def ack(self, deliveries: list[Delivery]) -> None:
        """Acknowledge deliveries the ledger has committed; an ack lost on the way only
        means a redelivery, which the ledger's idempotence absorbs."""
        if self._nc is None:
            raise BrokerError("consumer not started")
        try:
            for d in deliveries:
                await d._msg.ack()
            await self._nc.flush()
        except (nats.errors.Error, TimeoutError) as exc:
            raise BrokerError(f"ack to {self.stream}/{self.durable}: {exc}") from exc

    async def lag(self) -> int:
        """Messages not yet acked by this durable consumer (waiting or delivered)."""
        if self._js is None:
            raise BrokerError("consumer not started")
        try:
            info = await self._js.consumer_info(self.stream, self.durable)
        except (nats.errors.Error, TimeoutError) as exc:
            raise BrokerError(f"lag of {self.stream}/{self.durable}: {exc}") from exc
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        """Close the connection; unacked deliveries go back to the stream after ack_wait."""
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = self._js = self._sub = None
