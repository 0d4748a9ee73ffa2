"""Winning share -> `submitblock` request handed to the transport, for a real mainnet block.

The block is fixture 481829 (2,020 transactions, ~2 MB hex). A tiny aiohttp server on
127.0.0.1 (its own process) reads each request and answers `null`. Each measurement runs in
a fresh client process: one small call first (the pool's session is always warm from its
tip polling), then the process's first `submitblock`, then `--calls` more (steady state).
The figure is the time from the call to the last `transport.write` of the request.
Reference in the same run: `node/rpc.py` as it is at git revision `--ref`, loaded from
`git show` into the child processes, alternating with the current one.
Run: .venv/bin/python bench/bench_submitblock.py [--ref HEAD] [--procs 9] [--calls 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


async def serve() -> None:
    """The node stand-in: read the whole body, check it is a submitblock, answer null."""
    from aiohttp import web

    _pin(1)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        doc = json.loads(body)
        if doc["method"] == "submitblock" and not isinstance(doc["params"][0], str):
            raise web.HTTPBadRequest()
        return web.Response(body=b'{"result":null,"error":null,"id":%d}' % doc["id"])

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.Event().wait()


def _pin(cpu: int) -> None:
    """Client and server on their own cores (when there are two), so neither waits for the
    other to be scheduled: that noise is larger than the effect measured."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[cpu]})


def rpc_module(ref: str | None) -> Any:
    """hashfarm.node.rpc now, or as it is at git revision `ref`."""
    if ref is None:
        from hashfarm.node import rpc

        return rpc
    source = subprocess.run(
        ["git", "show", f"{ref}:src/hashfarm/node/rpc.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("ref_node_rpc")
    sys.modules[module.__name__] = module
    exec(compile(source, "ref_node_rpc", "exec"), module.__dict__)
    return module


async def client(port: int, ref: str | None, calls: int) -> dict[str, Any]:
    """One fresh process's figures: first submitblock and the steady-state median (us)."""
    from asyncio import selector_events

    _pin(0)

    from realdata import load_block_bytes

    rpc = rpc_module(ref)
    raw = load_block_bytes("mainnet-481829")
    last = [0.0]
    transport_cls: Any = selector_events._SelectorSocketTransport
    for name in ("write", "writelines"):
        original = getattr(transport_cls, name)

        def timed(self: Any, data: Any, _original: Any = original) -> None:
            _original(self, data)
            last[0] = time.perf_counter()

        setattr(transport_cls, name, timed)
    times = []
    async with rpc.RPCClient(f"http://u:p@127.0.0.1:{port}/") as node:
        await node.call("getblockcount")
        for _ in range(calls + 1):
            block_hex = raw.hex()  # fresh, as the pool assembles it per found block
            start = time.perf_counter()
            verdict = await node.submitblock(block_hex)
            times.append((last[0] - start) * 1e6)
            assert verdict is None
            del block_hex
    return {"first": times[0], "steady": statistics.median(times[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="git revision of the reference rpc.py")
    parser.add_argument("--procs", type=int, default=9, help="fresh processes per version")
    parser.add_argument("--calls", type=int, default=30, help="steady-state calls per process")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-ref", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    if args.client:
        print(json.dumps(asyncio.run(client(args.client, args.client_ref, args.calls))))
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        figures: dict[str, list[dict[str, Any]]] = {"reference": [], "now": []}
        for _ in range(args.procs):  # alternating, so drift hits both alike
            for label, ref in (("reference", args.ref), ("now", None)):
                argv = [sys.executable, __file__, "--client", str(port), "--calls", str(args.calls)]
                if ref is not None:
                    argv += ["--client-ref", ref]
                out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
                figures[label].append(json.loads(out))
    finally:
        server.terminate()
        server.wait()
    print(
        f"submitblock, block 481829 (~2 MB hex), call -> request handed to the transport, us;"
        f" medians over {args.procs} fresh processes (reference = {args.ref})"
    )
    for key, what in (("first", "first call in a process"), ("steady", "steady state")):
        before = statistics.median(f[key] for f in figures["reference"])
        after = statistics.median(f[key] for f in figures["now"])
        spread_b = [round(f[key]) for f in figures["reference"]]
        spread_a = [round(f[key]) for f in figures["now"]]
        print(
            f"  {what:24s} reference {before:7.0f}  now {after:7.0f}  ratio {before / after:5.2f}x"
        )
        print(f"    reference runs {sorted(spread_b)}\n    now runs       {sorted(spread_a)}")


if __name__ == "__main__":
    main()
