"""Thin async transports: the bytes of one reply, bounded in time and size. Nothing here
parses; `backends.read` does.

cgminer RPC (TCP 4028): one JSON request per connection; the miner replies once and closes,
so the reply is read to EOF (cgminer API-README). The whole exchange (connect, send, read)
runs under one deadline, and a reply over `max_reply_bytes` is refused while it streams, so a
hung or hostile machine costs one bounded task and one socket, never the poll round.

HTTP (AxeOS, Braiins REST) uses an aiohttp session the caller owns (connection reuse across a
fleet), with the same two bounds. aiohttp and OSError exceptions are translated here into
MachineUnreachable / CommandError and never leave this module.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import aiohttp

from hashfarm.fleet.errors import CommandError, MachineUnreachable
from hashfarm.fleet.model import MachineSnapshot
from hashfarm.fleet.sources.backends import Backend, read

__all__ = [
    "CGMINER_PORT",
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_TIMEOUT_S",
    "cgminer_request",
    "http_get",
    "poll_cgminer",
]

CGMINER_PORT = 4028
DEFAULT_TIMEOUT_S = 5.0  # connect + send + read of one reply, seconds
DEFAULT_MAX_REPLY_BYTES = 1 << 20  # the largest capture is 40 kB (Whatsminer stats)
_CHUNK = 64 * 1024


async def _read_to_eof(reader: asyncio.StreamReader, limit: int, where: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise MachineUnreachable(f"{where}: reply over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def cgminer_request(
    host: str,
    command: str,
    parameter: str | None = None,
    *,
    port: int = CGMINER_PORT,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
) -> bytes:
    """Send `{"command": command[, "parameter": ...]}` on a fresh connection and return the
    reply bytes as sent (cgminer's trailing NUL included; decode_reply strips it)."""
    where = f"{host}:{port} {command}"
    request: dict[str, Any] = {"command": command}
    if parameter is not None:
        request["parameter"] = parameter
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(json.dumps(request).encode())
            await writer.drain()
            return await _read_to_eof(reader, max_reply_bytes, where)
    except TimeoutError:
        raise MachineUnreachable(f"{where}: no complete reply within {timeout_s:g} s") from None
    except OSError as exc:
        raise MachineUnreachable(f"{where}: {exc.strerror or exc}") from exc
    finally:
        if writer is not None:
            writer.close()


async def poll_cgminer(
    backend: Backend,
    host: str,
    commands: Iterable[str],
    *,
    port: int = CGMINER_PORT,
    model: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
) -> MachineSnapshot:
    """Ask one machine each command its backend has (others are skipped, never sent) and
    return the merged snapshot. Raises MachineUnreachable, ReplyError or CommandError."""
    replies = {}
    for command in commands:
        if not backend.supports(command):
            continue
        replies[command] = await cgminer_request(
            host, command, port=port, timeout_s=timeout_s, max_reply_bytes=max_reply_bytes
        )
    return read(backend, replies, model=model)


async def http_get(
    session: aiohttp.ClientSession,
    base_url: str,
    path: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
) -> bytes:
    """GET `base_url + path` and return the body; a non-200 status is a CommandError."""
    url = base_url.rstrip("/") + path
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise CommandError(path, resp.status, resp.reason or "")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_reply_bytes:
                        raise MachineUnreachable(f"{url}: reply over {max_reply_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
    except TimeoutError:
        raise MachineUnreachable(f"{url}: no complete reply within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise MachineUnreachable(f"{url}: {exc}") from exc
