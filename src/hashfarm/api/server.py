"""The HTTP JSON API and Prometheus `/metrics` (aiohttp), read-only over a `ReadModel`.

Routes: `/api/pool`, `/api/workers`, `/api/workers/{name}`, `/api/blocks?limit=N` and
`/metrics`. Errors are JSON `{"error": "..."}` with the fitting status; aiohttp never leaks
out of this module (start/stop raise nothing but OSError for a port in use).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from hashfarm.api import metrics
from hashfarm.api.readmodel import ReadModel

log = logging.getLogger("hashfarm.api")

MODEL_KEY = web.AppKey("model", ReadModel)
BLOCKS_LIMIT_MAX = 1000  # most blocks one /api/blocks request may ask for


def make_app(model: ReadModel) -> web.Application:
    """The aiohttp application serving `model`."""
    app = web.Application()
    app[MODEL_KEY] = model
    app.router.add_get("/api/pool", _pool)
    app.router.add_get("/api/workers", _workers)
    app.router.add_get("/api/workers/{name}", _worker)
    app.router.add_get("/api/blocks", _blocks)
    app.router.add_get("/metrics", _metrics)
    return app


class ApiServer:
    """The API bound to host:port; `port` is the bound one (0 asks for an ephemeral port)."""

    def __init__(self, model: ReadModel, host: str, port: int) -> None:
        self._runner = web.AppRunner(make_app(model), access_log=None)
        self._host, self.port = host, port

    async def start(self) -> int:
        """Listen; return the bound port."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self.port).start()
        self.port = self._runner.addresses[0][1]  # the bound port when 0 was asked for
        log.info("HTTP API on http://%s:%d/api/pool and /metrics", self._host, self.port)
        return self.port

    async def stop(self) -> None:
        """Close the listener and every open request."""
        await self._runner.cleanup()


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


async def _pool(request: web.Request) -> web.Response:
    return _json(request.app[MODEL_KEY].pool_json())


async def _workers(request: web.Request) -> web.Response:
    return _json(request.app[MODEL_KEY].workers_json())


async def _worker(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    doc = request.app[MODEL_KEY].worker_json(name)
    return _error(404, f"no worker named {name!r} has sent a share") if doc is None else _json(doc)


async def _blocks(request: web.Request) -> web.Response:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= BLOCKS_LIMIT_MAX:
        return _error(400, f"limit must be an integer from 1 to {BLOCKS_LIMIT_MAX}, not {raw!r}")
    return _json(await request.app[MODEL_KEY].blocks_json(int(raw)))


async def _metrics(request: web.Request) -> web.Response:
    text = metrics.render(request.app[MODEL_KEY])
    return web.Response(text=text, headers={"Content-Type": metrics.CONTENT_TYPE})
