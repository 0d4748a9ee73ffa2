"""An idle pool's read model and an app server on 127.0.0.1, for page tests whose pages do
not read the pool (calculator, fleet, hosting, accounts): the dashboard's live feed still
looks at the pool every few seconds, and finds nobody connected, no job and no block."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from hashfarm.api.readmodel import PoolInfo, ReadModel
from hashfarm.pool.bans import BanList
from hashfarm.pool.records import BlockRecord
from hashfarm.pool.settings import BanSettings
from hashfarm.pool.stats import PoolStats


class IdlePool:
    """A pool with nobody connected: what the read model asks of the running pool."""

    bans = BanList(BanSettings())

    def sessions(self) -> list[object]:
        return []

    def current_job(self) -> None:
        return None


class NoBlocks:
    """A ledger that has recorded no block."""

    async def recent_blocks(self, limit: int = 50) -> list[BlockRecord]:
        return []


def idle_model() -> ReadModel:
    """The read model of an idle pool."""
    return ReadModel(PoolInfo("regtest", "solo", 0, 0.0), IdlePool(), PoolStats(), NoBlocks())


async def serve(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1 while iterated: yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
