"""`hashfarm proxy` as a process: a machine's share reaches the pool; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from hashfarm.hosting.promise import parse_work_csv
from nodes import RegtestNode, bcoin_address
from unit.pool.harness import MINER_SCRIPTS, pool_settings, running_pool, wait_for
from unit.pool.stratum_client import StratumTestMiner

pytestmark = pytest.mark.node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_hashfarm_proxy_relays_a_share_and_logs_its_stats(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    user = f"{bcoin_address(MINER_SCRIPTS[4])}.proxy"
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        port = free_port()
        args = ["--listen", f"127.0.0.1:{port}", "--user", user, "--stats-every", "1"]
        args += ["--upstream", f"stratum+tcp://127.0.0.1:{pool.stratum_port}"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from hashfarm.cli.main import main; main()", "proxy", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(15):
                first = await proc.stdout.readline()
            assert f"listening on 127.0.0.1:{port}" in first.decode()
            miner = StratumTestMiner(port, "carol.rig7")
            await miner.start()
            share = await miner.mine_share()
            assert share.response.ok, share.response.error
            await wait_for(lambda: any(s.accepted for s in recorder.shares), 5, "the pool's record")
            await miner.close()
            await asyncio.sleep(1.2)  # one stats line after the share
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    stats = [
        orjson.loads(line.split("stats ", 1)[1])
        for line in err.decode().splitlines()
        if "hashfarm.cli.proxy: stats " in line
    ]
    assert stats[-1]["accepted_by_machine"] == {"carol.rig7": 1}
    assert [s.worker for s in recorder.shares if s.accepted] == [user]


async def test_hashfarm_proxy_per_customer_stores_work_serves_stats_and_exports(
    regtest_node: RegtestNode, tmp_path: Path
) -> None:
    address = bcoin_address(MINER_SCRIPTS[3])
    settings = pool_settings(regtest_node.rpc_url, regtest_node.api_key, tmp_path)
    db, csv = tmp_path / "proxy.sqlite3", tmp_path / "work.csv"
    async with running_pool(settings, regtest_node.rpc()) as (pool, recorder):
        port, http_port = free_port(), free_port()
        args = ["--listen", f"127.0.0.1:{port}", "--per-customer", "--stats-db", str(db)]
        args += ["--upstream-user-template", f"{address}.{{customer}}"]
        args += ["--stats-listen", f"127.0.0.1:{http_port}"]
        args += ["--upstream", f"stratum+tcp://127.0.0.1:{pool.stratum_port}"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from hashfarm.cli.main import main; main()", "proxy", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(15):
                await proc.stdout.readline()
                assert "stats on" in (await proc.stdout.readline()).decode()
            miner = StratumTestMiner(port, "dave.rig1")
            await miner.start()
            share = await miner.mine_share()
            assert share.response.ok, share.response.error
            await miner.close()
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{http_port}/stats") as resp,
            ):
                served = await resp.json()
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert served["mode"] == "per-customer"
    assert served["channels"]["dave"]["upstream_user"] == f"{address}.dave"
    assert served["accepted_by_machine"] == {"dave.rig1": 1}
    assert [s.worker for s in recorder.shares if s.accepted] == [f"{address}.dave"]
    export = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from hashfarm.cli.main import main; main()", "proxy",
        "export-work", "--stats-db", str(db), "--out", str(csv),
    )  # fmt: skip
    assert await export.wait() == 0
    work = parse_work_csv(csv.read_text())
    assert [(mid, float(w)) for (mid, _day), w in work.items()] == [
        ("dave.rig1", served["work_by_machine"]["dave.rig1"])
    ]
