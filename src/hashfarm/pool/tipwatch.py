"""New-tip detection and template refresh: the pool's view of the node, kept current.

Three detectors feed one path, by previous-block hash (never height, which a reorg can keep):
- a `getbestblockhash` poll every `poll_interval` (<= 100 ms), the fallback that always runs;
- GBT longpoll when the node offers a `longpollid` (also wakes on new transactions);
- ZMQ `hashblock`, when configured: `node/` hands in an async iterator of display-hex hashes.
A timer refreshes the template every `refresh_interval` seconds so miners get new
transactions (and fresh work: some firmware drops a pool that stays silent for a minute).

When the node goes away, detectors back off (capped) and log once; miners stay connected and
keep their current work. When it comes back, the template is fetched before anything else,
so no work is handed out on a tip the node no longer has; the recovery is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from hashfarm.errors import NodeError, NodeUnavailable
from hashfarm.node.template import Template, parse_template
from hashfarm.pool.settings import NodeSettings

log = logging.getLogger(__name__)

LONGPOLL_TIMEOUT = 120.0  # seconds one longpoll request may wait before it is renewed


class NodeRPC(Protocol):
    """The node calls the pool makes (`hashfarm.node.rpc.RPCClient` implements them)."""

    async def proposeblock(self, block_hex: str) -> str | None:
        """BIP 23 proposal: None when the node finds nothing wrong, else its reason."""
        ...

    async def getblocktemplate(
        self,
        rules: Any = ("segwit",),
        longpollid: str | None = None,
        attempt_timeout: float | None = None,
    ) -> dict[str, Any]:
        """A block template; with `longpollid`, wait for a change."""
        ...

    async def submitblock(self, block_hex: str) -> str | None:
        """None when accepted, else the node's reason."""
        ...

    async def getbestblockhash(self) -> str:
        """The tip's hash, display order."""
        ...

    async def getblockhash(self, height: int) -> str:
        """The active chain's block hash at `height`, display order."""
        ...


OnTemplate = Callable[[Template, str], Awaitable[None]]
"""Called with each new template and why it was fetched ("new tip (poll)", "refresh"...)."""


class TipWatcher:
    """Runs the detectors and hands every new template to `on_template`."""

    def __init__(
        self,
        rpc: NodeRPC,
        settings: NodeSettings,
        on_template: OnTemplate,
        hashblock: Callable[[], AsyncIterator[str]] | None = None,
    ) -> None:
        self.rpc = rpc
        self.settings = settings
        self.on_template = on_template
        self.hashblock = hashblock
        self.template: Template | None = None
        self.node_up = True
        self.detected_at = 0.0  # perf_counter when the latest new tip was noticed
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def tip_hex(self) -> str | None:
        """Display-order hash the current template builds on."""
        return None if self.template is None else self.template.prev_hash[::-1].hex()

    async def fetch(self, reason: str) -> Template:
        """Fetch a template now and hand it on (one fetch at a time)."""
        async with self._lock:
            return await self._fetch_locked(reason)

    async def _fetch_locked(self, reason: str) -> Template:
        template = parse_template(await self.rpc.getblocktemplate())
        self.template = template
        await self.on_template(template, reason)
        return template

    def start(self) -> None:
        """Start the detectors (the first template must already be fetched)."""
        self._spawn(self._poll_loop(), "poll")
        self._spawn(self._refresh_loop(), "refresh")
        if self.settings.longpoll:
            self._spawn(self._longpoll_loop(), "longpoll")
        if self.hashblock is not None:
            self._spawn(self._zmq_loop(), "zmq")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coro))
        self._tasks[-1].set_name(f"tipwatch-{name}")

    async def stop(self) -> None:
        """Cancel the detectors."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def tip_seen(self, tip_hex: str, source: str) -> None:
        """A detector saw `tip_hex`: fetch a new template unless we already build on it."""
        if tip_hex == self.tip_hex:
            return
        self.detected_at = time.perf_counter()
        async with self._lock:
            if tip_hex == self.tip_hex:
                return  # another detector got there first
            log.info("new tip %s (%s)", tip_hex, source)
            await self._fetch_locked(f"new tip ({source})")

    def _node_state(self, up: bool, exc: Exception | None = None) -> None:
        if up and not self.node_up:
            log.warning("node is back: resuming with a fresh template")
        elif not up and self.node_up:
            log.error("node unavailable (%s): miners keep their current work", exc)
        self.node_up = up

    async def _poll_loop(self) -> None:
        delay = self.settings.poll_interval
        while True:
            await asyncio.sleep(delay)
            try:
                tip = await self.rpc.getbestblockhash()
                was_down = not self.node_up
                self._node_state(True)
                if was_down:
                    await self.fetch("node back")
                else:
                    await self.tip_seen(tip, "poll")
                delay = self.settings.poll_interval
            except NodeError as exc:
                self._node_state(False, exc)
                delay = min(max(delay * 2, self.settings.poll_interval), self.settings.retry_max)
            except Exception:  # a bug must not stop tip detection: log it and poll on
                log.exception("tip poll failed")
                delay = self.settings.retry_max

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_interval)
            if not self.node_up:
                continue
            try:
                await self._refresh()
            except NodeError as exc:
                log.warning("template refresh failed: %s", exc)
            except Exception:  # keep refreshing whatever one template did
                log.exception("template refresh failed")

    async def _refresh(self) -> None:
        async with self._lock:
            template = parse_template(await self.rpc.getblocktemplate())
            reason = "refresh" if template.prev_hash == self._prev() else "new tip (refresh)"
            self.template = template
            await self.on_template(template, reason)

    def _prev(self) -> bytes | None:
        return None if self.template is None else self.template.prev_hash

    async def _longpoll_loop(self) -> None:
        while True:
            lpid = self.template.longpollid if self.template else None
            if lpid is None or not self.node_up:
                await asyncio.sleep(max(self.settings.poll_interval, 1.0))
                continue
            try:
                gbt = await self.rpc.getblocktemplate(
                    longpollid=lpid, attempt_timeout=LONGPOLL_TIMEOUT
                )
            except NodeUnavailable:
                await asyncio.sleep(self.settings.retry_max)
                continue
            except NodeError as exc:
                log.warning("longpoll failed (%s): relying on the poll", exc)
                await asyncio.sleep(self.settings.retry_max)
                continue
            try:
                await self._adopt_longpoll(gbt)
            except Exception:
                log.exception("longpoll template not adopted")
                await asyncio.sleep(self.settings.retry_max)

    async def _adopt_longpoll(self, gbt: dict[str, Any]) -> None:
        template = parse_template(gbt)
        async with self._lock:
            current = self.template
            if current is not None and (
                template.longpollid == current.longpollid or template.height < current.height
            ):
                return  # nothing new, or overtaken by a newer tip while it was in flight
            new_tip = template.prev_hash != self._prev()
            if new_tip:
                self.detected_at = time.perf_counter()
            self.template = template
            await self.on_template(template, "new tip (longpoll)" if new_tip else "longpoll")

    async def _zmq_loop(self) -> None:
        assert self.hashblock is not None
        while True:
            try:
                async for block_hash_hex in self.hashblock():
                    await self.tip_seen(block_hash_hex, "zmq")
            except NodeError as exc:
                log.warning("zmq hashblock failed (%s): relying on the poll", exc)
            await asyncio.sleep(self.settings.retry_max)
