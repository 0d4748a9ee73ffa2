"""The message broker between Stratum front ends and the ledger (NATS JetStream).

`Publisher` (front ends) acknowledges a message once the broker has durably taken it, or
once the local spool has fsynced it while the broker is away; `Consumer` (the ledger) reads
them with explicit acks and redelivery. Only this package imports `nats`. Needs the
`cluster` extra (nats-py). See docs/scale-out.md for the choice of broker and its limits.
"""

from __future__ import annotations

from hashfarm.errors import ConfigError

try:
    import nats  # noqa: F401
except ImportError as exc:  # a light install: `pip install hashfarm` leaves the client out
    raise ConfigError(
        "cluster.role: the stratum and ledger roles need nats-py, which is not installed: "
        "pip install 'hashfarm[cluster]'"
    ) from exc

from hashfarm.broker.consumer import Consumer, Delivery
from hashfarm.broker.lease import FrontendLease, LeaseHeld
from hashfarm.broker.publisher import Publisher, PublisherStats
from hashfarm.broker.stream import StreamLimits

__all__ = [
    "Consumer",
    "Delivery",
    "FrontendLease",
    "LeaseHeld",
    "Publisher",
    "PublisherStats",
    "StreamLimits",
]
