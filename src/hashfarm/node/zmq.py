"""Bitcoin Core's ZMQ `hashblock` notifications, as an async iterator of block hashes.

Core publishes one multipart message per block it connects on `-zmqpubhashblock=URL`:
`[b"hashblock", 32-byte hash, 4-byte little-endian sequence number]`, the hash already in
display order (as RPC prints it). A SUB socket never errors when the node is down: ZMQ
reconnects by itself, and messages sent meanwhile are lost, which is why the pool keeps
polling `getbestblockhash` too. Gaps in the sequence are logged.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import zmq
import zmq.asyncio

from hashfarm.errors import NodeError, NodeUnavailable

log = logging.getLogger(__name__)

TOPIC = b"hashblock"
HASH_SIZE = 32
SEQUENCE_SIZE = 4
RECEIVE_HWM = 1000  # messages queued before ZMQ drops (a tip is stale long before)


async def hashblock_stream(
    url: str, *, context: zmq.asyncio.Context | None = None
) -> AsyncIterator[str]:
    """Yield the display-hex hash of each block the node announces on `url`.

    A bad `url` raises NodeError at once; a failing socket raises NodeUnavailable.
    Malformed messages are logged and skipped.
    """
    socket = _subscribe(url, context or zmq.asyncio.Context.instance())
    last_sequence: int | None = None
    try:
        while True:
            try:
                parts = await socket.recv_multipart()
            except zmq.ZMQError as exc:
                raise NodeUnavailable(f"zmq {url}: {exc}") from exc
            block_hash = _block_hash(parts)
            if block_hash is None:
                continue
            last_sequence = _check_sequence(parts, last_sequence, url)
            yield block_hash
    finally:
        socket.close(linger=0)


def _subscribe(url: str, context: zmq.asyncio.Context) -> zmq.asyncio.Socket:
    socket = context.socket(zmq.SUB)
    try:
        socket.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        # Core's docs advise TCP keep-alive: a NAT or firewall may silently drop an idle link.
        socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
        socket.setsockopt(zmq.SUBSCRIBE, TOPIC)
        socket.connect(url)
    except zmq.ZMQError as exc:
        socket.close(linger=0)
        raise NodeError(f"zmq endpoint {url!r} cannot be used: {exc}") from exc
    return socket


def _block_hash(parts: list[bytes]) -> str | None:
    """The display-hex hash of a well-formed hashblock message, else None (logged)."""
    if len(parts) < 2 or parts[0] != TOPIC or len(parts[1]) != HASH_SIZE:
        log.warning("zmq: ignoring a message that is not hashblock: %r", [p[:40] for p in parts])
        return None
    return parts[1].hex()


def _check_sequence(parts: list[bytes], last: int | None, url: str) -> int | None:
    """Log missed notifications; the new sequence number (None if the message has none)."""
    if len(parts) < 3 or len(parts[2]) != SEQUENCE_SIZE:
        return last
    sequence = int.from_bytes(parts[2], "little")
    if last is not None and sequence != (last + 1) & 0xFFFFFFFF:
        missed = (sequence - last - 1) & 0xFFFFFFFF
        log.warning("zmq %s: %d hashblock notification(s) missed", url, missed)
    return sequence
