"""The JetStream stream the share flow uses: created on first use, with documented limits.

* file storage: the server writes every message to disk before its PubAck (a publisher
  acknowledges a share only after that PubAck, or after its own spool's fsync);
* work-queue retention: a message leaves the stream once the (one) ledger consumer acked it,
  so the disk holds only what the ledger has not committed yet;
* discard new at `max_msgs`: a full stream refuses new messages rather than dropping old
  ones, and the refused publisher spools them locally until the ledger catches up. The bound
  is a count of messages, not of bytes: nats-server before 2.10.5 admits a message by an
  estimate of its size smaller than what it stores, then trims the stream back under
  `max_bytes` by deleting its oldest messages, which a work queue holds only because the
  ledger has not committed them (nats-server issue 4771; measured on 2.9.10: 374 messages
  acknowledged, 368 kept). The disk a full stream takes is `max_msgs` times the messages'
  size (shares ~280 bytes); a byte bound is the operator's to add on a fixed server;
* a duplicate window: a message whose Nats-Msg-Id the stream saw within the window is
  acknowledged as a duplicate and not stored again (a spool replay of a message the broker
  had already taken). Past the window the ledger's unique share id still catches it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js import errors as js_errors

from hashfarm.errors import BrokerError

log = logging.getLogger(__name__)

# nats-server releases from this one on keep a discard-new stream under max_bytes by refusal
# only; earlier ones may delete the oldest messages to get back under it (issue 4771)
EXACT_BYTE_LIMIT_SERVER = (2, 10, 5)


def server_list(servers: str) -> list[str]:
    """The broker URLs of a comma-separated `servers` setting (the client tries each)."""
    urls = [u.strip() for u in servers.split(",") if u.strip()]
    if not urls:
        raise BrokerError("no broker URL given")
    return urls


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The limits of a stream created by hashfarm (an existing stream keeps its own)."""

    max_msgs: int = 30_000_000  # messages held before publishes are refused (~8 GiB of shares)
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
        max_msgs=limits.max_msgs,
        max_age=limits.max_age_s,
        max_msg_size=limits.max_msg_bytes,
        duplicate_window=limits.duplicate_window_s,
        num_replicas=1,
    )


async def ensure_stream(
    js: JetStreamContext, name: str, subjects: list[str], limits: StreamLimits
) -> js_api.StreamInfo:
    """The stream `name`, created with `limits` when it does not exist yet; an existing
    stream is left as its operator configured it (with a warning when its configuration can
    lose acknowledged messages on this server)."""
    try:
        info = await js.stream_info(name)
    except js_errors.NotFoundError:
        pass
    else:
        if problem := loss_risk(info.config, server_version(js)):
            log.warning("stream %s: %s", name, problem)
        return info
    try:
        return await js.add_stream(stream_config(name, subjects, limits))
    except js_errors.BadRequestError:
        return await js.stream_info(name)  # another process created it meanwhile


def server_version(js: JetStreamContext) -> tuple[int, int, int] | None:
    """The connected nats-server's version, when the client knows it."""
    try:
        v = js._nc.connected_server_version
        return (int(v.major), int(v.minor), int(v.patch))
    except Exception:
        return None


def loss_risk(config: js_api.StreamConfig, version: tuple[int, int, int] | None) -> str | None:
    """How a full stream of this configuration would delete messages the publishers had
    acknowledged (shares the ledger has not committed), or None when it only refuses."""
    bounded = any((n or 0) > 0 for n in (config.max_bytes, config.max_msgs))
    if config.discard == js_api.DiscardPolicy.OLD and bounded:
        return (
            "discard old: when full, the stream deletes its oldest messages, shares the "
            "ledger has not committed yet; set discard new (the front ends spool what a full "
            "stream refuses)"
        )
    if not config.max_bytes or config.max_bytes < 0:
        return None
    if version is not None and version >= EXACT_BYTE_LIMIT_SERVER:
        return None
    shown = ".".join(map(str, version)) if version else "an unknown version"
    return (
        f"max_bytes {config.max_bytes} with discard new on nats-server {shown}: servers "
        "before 2.10.5 delete the oldest unconsumed messages when a message takes the stream "
        "past max_bytes (nats-server issue 4771); bound the stream by max_msgs instead, or "
        "upgrade the server"
    )
