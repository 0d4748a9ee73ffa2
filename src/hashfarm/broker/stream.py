"""The JetStream stream the share flow uses: created on first use, with documented limits.

* file storage: the server writes every message to disk before its PubAck (a publisher
  acknowledges a share only after that PubAck, or after its own spool's fsync);
* work-queue retention: a message leaves the stream once the (one) ledger consumer acked it,
  so the disk holds only what the ledger has not committed yet;
* discard new at `max_bytes`: a full stream refuses new messages rather than dropping old
  ones, and the refused publisher spools them locally until the ledger catches up;
* a duplicate window: a message whose Nats-Msg-Id the stream saw within the window is
  acknowledged as a duplicate and not stored again (a spool replay of a message the broker
  had already taken). Past the window the ledger's unique share id still catches it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from hashfarm.errors import BrokerError


def server_list(servers: str) -> list[str]:
    """The broker URLs of a comma-separated `servers` setting (the client tries each)."""
    urls = [u.strip() for u in servers.split(",") if u.strip()]
    if not urls:
        raise BrokerError("no broker URL given")
    return urls


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The limits of a stream created by hashfarm (an existing stream keeps its own)."""

    max_bytes: int = 8 << 30  # bytes on the server's disk before publishes are refused
    max_age_s: float = 7 * 86400.0  # seconds a message the ledger never took is kept
    max_msg_bytes: int = 1 << 20  # largest message the stream takes
    duplicate_window_s: float = 120.0  # seconds a Nats-Msg-Id is remembered for dedup


def stream_config(name: str, subjects: list[str], limits: StreamLimits) -> js_api.StreamConfig:
    """The configuration hashfarm creates its stream with."""
    return js_api.StreamConfig(
        name=name,
        subjects=list(subjects),
        retention=js_api.RetentionPolicy.WORK_QUEUE,
        storage=js_api.StorageType.FILE,
        discard=js_api.DiscardPolicy.NEW,
        max_bytes=limits.max_bytes,
        max_age=limits.max_age_s,
        max_msg_size=limits.max_msg_bytes,
        duplicate_window=limits.duplicate_window_s,
        num_replicas=1,
    )


async def ensure_stream(
    js: JetStreamContext, name: str, subjects: list[str], limits: StreamLimits
) -> js_api.StreamInfo:
    """The stream `name`, created with `limits` when it does not exist yet; an existing
    stream is left as its operator configured it."""
    try:
        return await js.stream_info(name)
    except js_errors.NotFoundError:
        pass
    try:
        return await js.add_stream(stream_config(name, subjects, limits))
    except js_errors.BadRequestError:
        return await js.stream_info(name)  # another process created it meanwhile
