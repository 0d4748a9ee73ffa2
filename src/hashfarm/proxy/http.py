"""The proxy's stats route: `GET /stats` -> `Proxy.stats_dict()` as JSON (aiohttp, as the
project's API). Off unless `--stats-listen` is given; bind it to 127.0.0.1."""

from __future__ import annotations

import orjson
from aiohttp import web

from hashfarm.proxy.server import Proxy


def stats_app(proxy: Proxy) -> web.Application:
    async def stats(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(proxy.stats_dict()), content_type="application/json")

    app = web.Application()
    app.router.add_get("/stats", stats)
    return app


async def start_stats(proxy: Proxy, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve the stats route; returns the runner (call `cleanup()`) and the bound port."""
    runner = web.AppRunner(stats_app(proxy), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
