"""A real JSON-RPC HTTP server on 127.0.0.1 for tests that play a node (Core's answers,
Core's refusals) where the regtest node cannot: signet, mainnet defaults, start-up waits.

`async with json_rpc_server(handler) as url:` serves POST / with `handler` on a free port.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.Response]]

SIGNET_REFUSAL = (  # Core's message (rpc/mining.cpp), verbatim
    'getblocktemplate must be called with the signet rule set (call with {"rules": '
    '["segwit", "signet"]})'
)


@contextlib.asynccontextmanager
async def json_rpc_server(handler: Handler) -> AsyncIterator[str]:
    """Serve `handler` at http://127.0.0.1:PORT/ until the block ends; yields the URL."""
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        await runner.cleanup()
