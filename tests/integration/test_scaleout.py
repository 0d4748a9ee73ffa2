"""The scaled-out pool on real parts: three `hashfarm pool --role stratum` processes, one
`--role ledger`, the NATS JetStream server on 127.0.0.1:4222, PostgreSQL and the session's
regtest node.

Each test gets a stream, subjects and a durable consumer of its own (deleted afterwards), so
it shares the development broker with nothing. A share is identified end to end by its
header hash: the client computes it from the header it built, the ledger stores it as
`shares.share_id`. "Acknowledged" means the front end answered `true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psycopg
import pytest

from hashfarm.chain.hashes import sha256d
from hashfarm.chain.pow import bits_to_difficulty, difficulty_to_target, hash_difficulty
from hashfarm.node.bcoin import free_port
from hashfarm.node.rpc import RPCClient
from hashfarm.stratum import messages
from hashfarm.stratum.codec import encode
from hashfarm.stratum.work import serialize_header
from nodes import NATS_HOST, NATS_PORT, NATS_URL, RegtestNode, nats_problem, service_missing
from unit.pool.stratum_client import StratumTestMiner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the load generator
from loadgen import Miner, Share, connect_many

pytestmark = [pytest.mark.node, pytest.mark.services]

HASHFARM = Path(sys.executable).parent / "hashfarm"
FRONT_ENDS = 3


@pytest.fixture
def nats_url() -> str:
    if problem := nats_problem():
        service_missing(problem)
    return NATS_URL


@dataclass
class Proc:
    """One `hashfarm pool` process of the cluster and where its output goes."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    stratum_port: int = 0
    http_port: int = 0
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env
            )

    def kill9(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        assert self.popen.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    async def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            return await resp.text()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-25:])

    async def health(self) -> tuple[int, dict[str, object]]:
        url = f"http://127.0.0.1:{self.http_port}/health"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status, await resp.json()


@dataclass
class Cluster:
    """Three front ends and a ledger on one stream of the test broker."""

    node: RegtestNode
    nats_url: str
    pg_url: str
    tmp: Path
    tag: str = field(default_factory=lambda: "hft" + uuid.uuid4().hex[:10])
    front_ends: list[Proc] = field(default_factory=list)
    ledger: Proc | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # settings for every process

    def env(self) -> dict[str, str]:
        return self.extra_env | {
            **os.environ,
            "HASHFARM_CLUSTER_BROKER_URL": self.nats_url,
            "HASHFARM_CLUSTER_STREAM": self.tag,
            "HASHFARM_CLUSTER_SUBJECT_PREFIX": self.tag,
            "HASHFARM_CLUSTER_DURABLE": self.tag + "-ledger",
            "HASHFARM_CLUSTER_SPOOL_DIR": str(self.tmp / "spool"),
            "HASHFARM_VARDIFF_INITIAL": "1e-11",  # regtest's network difficulty is ~4.7e-10
            "HASHFARM_VARDIFF_ENABLED": "false",  # stays there: load shares are never blocks
        }

    def node_args(self) -> list[str]:
        return ["--rpc-url", self.node.rpc_url, "--rpc-password", self.node.api_key]

    def add_front_end(self, fid: int, broker_url: str | None = None) -> Proc:
        port, http = free_port(), free_port()
        args = [str(HASHFARM), "pool", "--role", "stratum", "--frontend-id", str(fid),
                *self.node_args(), "--stratum-port", str(port),
                "--http-port", str(http)]  # fmt: skip
        env = self.env() | ({"HASHFARM_CLUSTER_BROKER_URL": broker_url} if broker_url else {})
        n = len(self.front_ends)  # its own spool and log even if an id is given twice
        env["HASHFARM_CLUSTER_SPOOL_DIR"] = str(self.tmp / f"spool{n}")
        proc = Proc(f"frontend-{fid}", args, env, self.tmp / f"fe{n}-{fid}.log", port, http)
        self.front_ends.append(proc)
        return proc

    def add_ledger(self) -> Proc:
        http = free_port()
        args = [str(HASHFARM), "pool", "--role", "ledger", "--db", self.pg_url,
                *self.node_args(), "--http-port", str(http)]  # fmt: skip
        self.ledger = Proc("ledger", args, self.env(), self.tmp / "ledger.log", 0, http)
        return self.ledger

    async def wait_ready(self, proc: Proc) -> None:
        """Until the process answers /health (and, a front end, accepts Stratum)."""
        for _ in range(400):
            assert proc.popen is not None
            assert proc.popen.poll() is None, f"{proc.name} exited:\n{proc.tail()}"
            try:
                status, _ = await proc.health()
                if proc.stratum_port:
                    _, w = await asyncio.open_connection("127.0.0.1", proc.stratum_port)
                    w.close()
                if status == 200:
                    return
            except (OSError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"{proc.name} never became ready:\n{proc.tail()}")

    async def stored(self) -> list[tuple[str, str | None, str]]:
        """(share_id, block_hash, extranonce1) of every share row."""
        async with await psycopg.AsyncConnection.connect(self.pg_url) as conn:
            cur = await conn.execute("SELECT share_id, block_hash, extranonce1 FROM shares")
            return [
                (str(a), b if b is None else str(b), str(c)) for a, b, c in await cur.fetchall()
            ]

    async def drained(self, wait_s: float = 90.0) -> None:  # ack_wait (30 s) included
        """Until every front end's spool is empty and the ledger's lag is 0."""
        assert self.ledger is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        published_at: float | None = None  # when every front end was seen with nothing left
        while loop.time() < deadline:
            docs = [(await p.health())[1] for p in self.front_ends if _alive(p)]
            if published_at is None and all(
                d["spool_messages"] == 0 and d["in_flight"] == 0 for d in docs
            ):
                published_at = time.time()
            _, ledger = await self.ledger.health()
            read_at = ledger["lag_read_at"]
            fresh = (
                isinstance(read_at, float)
                and published_at is not None
                and (
                    read_at > published_at  # a lag read after the last publish, not before
                )
            )
            if fresh and ledger["lag"] == 0:
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"not drained: front ends {docs}, ledger {ledger}")

    def close(self) -> None:
        for p in [*self.front_ends, *([self.ledger] if self.ledger else [])]:
            p.stop()


def _alive(p: Proc) -> bool:
    return p.popen is not None and p.popen.poll() is None


async def delete_stream(nats_url: str, stream: str) -> None:
    """Leave nothing on the shared development broker."""
    import nats

    nc = await nats.connect(nats_url)
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
        with contextlib.suppress(Exception):  # the front ends' frontend_id lease bucket
            await nc.jetstream().delete_key_value(f"{stream}-frontends")
    finally:
        await nc.close()


@pytest.fixture
async def cluster(
    regtest_node: RegtestNode, nats_url: str, fresh_pg_url: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    c = Cluster(regtest_node, nats_url, fresh_pg_url, tmp_path)
    try:
        yield c
    finally:
        c.close()
        await delete_stream(nats_url, c.tag)


async def start_all(c: Cluster, broker_urls: dict[int, str] | None = None) -> None:
    ledger = c.add_ledger()
    ledger.start()
    await c.wait_ready(ledger)  # creates the stream and the durable consumer
    for fid in range(FRONT_ENDS):
        c.add_front_end(fid, (broker_urls or {}).get(fid)).start()
    for fe in c.front_ends:
        await c.wait_ready(fe)


class Cuttable:
    """A TCP forwarder to the broker that the test can cut (a network partition) and mend."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def mend(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._links):
            w.transport.abort()
        self._links.clear()
        await self._server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(NATS_HOST, NATS_PORT)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_w}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._links -= {writer, up_w}


# -- shares the client can identify by their header hash --------------------------------


def prepare(
    miner: Miner, count: int, keep: Callable[[float], bool]
) -> tuple[list[Share], dict[int, str]]:
    """`count` distinct shares on the miner's job and each one's id (header hash, display)."""
    job = miner.job
    assert job is not None
    shares: list[Share] = []
    ids: dict[int, str] = {}
    nonce_base = 0
    while len(shares) < count:
        en2 = next(miner._en2).to_bytes(miner.extranonce2_size, "big")
        root = job.merkle_root(miner.extranonce1, en2)
        for nonce in range(nonce_base, nonce_base + 4 * count):
            digest = sha256d(serialize_header(job.version, job.prev_hash, root, job.time,
                                              job.bits, nonce))  # fmt: skip
            if not keep(hash_difficulty(digest)):
                continue
            msg_id = next(miner._ids)
            submit = messages.Submit(miner.user, job.job_id, en2, job.time, nonce)
            shares.append(Share(msg_id, encode(messages.submit(msg_id, submit)), job.job_id,
                                hash_difficulty(digest)))  # fmt: skip
            ids[msg_id] = digest[::-1].hex()
            if len(shares) == count:
                break
    return shares, ids


@dataclass
class Load:
    """Miners on the front ends, their prepared shares and the submitting tasks."""

    miners: list[Miner]
    ids: dict[tuple[int, int], str]  # (miner index, msg id) -> share id
    batches: list[list[Share]]
    tasks: list[asyncio.Future[None]]

    def acked(self) -> set[str]:
        out = set()
        for i, m in enumerate(self.miners):
            for msg_id, answer in m.answers.items():
                if answer.ok and (i, msg_id) in self.ids:
                    out.add(self.ids[(i, msg_id)])
        return out

    def share_answers(self, i: int) -> int:
        return sum((i, msg_id) in self.ids for msg_id in self.miners[i].answers)

    def answered(self) -> int:
        return sum(self.share_answers(i) for i in range(len(self.miners)))


async def start_load(ports: list[int], user: str, per_port: int, shares_each: int) -> Load:
    miners: list[Miner] = []
    for port in ports:
        miners += await connect_many(
            "127.0.0.1", port, [f"{user}.p{port}w{i}" for i in range(per_port)]
        )
    ids: dict[tuple[int, int], str] = {}
    batches = []
    for i, m in enumerate(miners):
        assert m.job is not None
        low, high = m.difficulty or 0.0, bits_to_difficulty(m.job.bits)
        batch, mine = prepare(m, shares_each, lambda d: low <= d < high)  # noqa: B023
        ids |= {(i, k): v for k, v in mine.items()}
        batches.append(batch)
    tasks = [
        asyncio.ensure_future(m.submit(b, burst=32)) for m, b in zip(miners, batches, strict=True)
    ]
    return Load(miners, ids, batches, tasks)


async def finish(load: Load) -> None:
    await asyncio.gather(*load.tasks)
    for m in load.miners:
        await m.close()


async def until(predicate: Callable[[], bool], wait_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def check_exactly_once(acked: set[str], stored: list[tuple[str, str | None, str]]) -> None:
    ids = [s for s, _, _ in stored]
    assert len(ids) == len(set(ids)), "a share was credited twice"
    missing = acked - set(ids)
    assert not missing, f"{len(missing)} acknowledged shares lost, e.g. {sorted(missing)[:3]}"


# -- the tests ----------------------------------------------------------------------------


async def test_blocks_through_every_front_end_and_every_share_once(
    cluster: Cluster, rpc: RPCClient
) -> None:
    user = await cluster.node.payout_address()
    cluster.extra_env = {  # pooled, PPLNS credited by the ledger role's accounting service
        "HASHFARM_MODE": "pooled",
        "HASHFARM_PAYOUT_ADDRESS": user,
        "HASHFARM_ACCOUNTING_ENABLED": "true",
        "HASHFARM_ACCOUNTING_SCHEME": "pplns",
    }
    await start_all(cluster)
    load = await start_load([fe.stratum_port for fe in cluster.front_ends], user, 2, 400)
    await finish(load)
    acked = load.acked()
    assert len(acked) == FRONT_ENDS * 2 * 400  # every share answered true
    # extranonce1 ranges: each front end's miners carry its id in the top byte
    for i, m in enumerate(load.miners):
        assert m.extranonce1[0] == i // 2
    assert all(m.job is not None and m.job.job_id.startswith(f"{i // 2:02x}")
               for i, m in enumerate(load.miners))  # fmt: skip

    found: list[str] = []
    for fid, fe in enumerate(cluster.front_ends):  # one block through each front end
        miner = StratumTestMiner(fe.stratum_port, f"{user}.block{fid}")
        await miner.start()
        before = await rpc.getbestblockhash()
        job = miner.job
        assert job is not None
        while job.prev_hash[::-1].hex() != before:  # this front end has seen the last block
            job = await miner.wait_job()
        header, en2 = miner.grind(job, difficulty_to_target(bits_to_difficulty(job.bits)))
        resp = await miner.submit(job, header, en2)
        assert resp.ok, resp.error
        block_hash = sha256d(header)[::-1].hex()
        for _ in range(200):
            if await rpc.getbestblockhash() != before:
                break
            await asyncio.sleep(0.05)
        assert await rpc.getbestblockhash() == block_hash, f"front end {fid}'s block not on tip"
        assert miner.extranonce1[0] == fid
        found.append(block_hash)
        acked.add(block_hash)  # the block's share was answered true
        await miner.close()

    await cluster.drained()
    stored = await cluster.stored()
    check_exactly_once(acked, stored)
    assert {s for s, b, _ in stored if b is not None} == set(found)
    async with await psycopg.AsyncConnection.connect(cluster.pg_url) as conn:
        cur = await conn.execute("SELECT hash FROM blocks WHERE accepted_by_node")
        assert {h for (h,) in await cur.fetchall()} == set(found)
    _, doc = await cluster.front_ends[0].health()
    assert doc["role"] == "stratum"
    assert doc["broker_connected"] is True
    assert doc["node_reachable"] is True
    assert cluster.ledger is not None
    _, ldoc = await cluster.ledger.health()
    assert ldoc["role"] == "ledger"
    assert ldoc["lag"] == 0
    assert ldoc["shares_held"] == 0  # PPLNS here: no share waits for its job's terms
    assert "hashfarm_broker_spool_messages 0" in await cluster.front_ends[2].metrics()
    assert "hashfarm_ledger_broker_lag_messages 0" in await cluster.ledger.metrics()
    # the ledger role's crediting service tracks the blocks the front ends found
    tracked: set[str] = set()
    for _ in range(300):
        async with await psycopg.AsyncConnection.connect(cluster.pg_url) as conn:
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                cur = await conn.execute("SELECT hash FROM acct_blocks")
                tracked = {str(h) for (h,) in await cur.fetchall()}
        if tracked >= set(found):
            break
        await asyncio.sleep(0.1)
    assert tracked == set(found), cluster.ledger.tail()


async def test_kill9_front_end_and_ledger_under_load(cluster: Cluster) -> None:
    await start_all(cluster)
    user = await cluster.node.payout_address()
    ports = [fe.stratum_port for fe in cluster.front_ends]
    load = await start_load(ports, user, 2, 1500)
    victim = cluster.front_ends[1]
    assert cluster.ledger is not None

    await until(lambda: load.answered() >= 1500, 60, "1,500 answers")
    cluster.ledger.kill9()  # the ledger dies under load: front ends keep acking into the broker
    await until(lambda: load.answered() >= 3000, 60, "answers without a ledger")
    victim.kill9()  # a front end dies with shares in flight
    victim_miners = load.miners[2:4]
    cluster.ledger.start()  # restarted in the other order
    victim.start()
    await cluster.wait_ready(cluster.ledger)
    await cluster.wait_ready(victim)
    await asyncio.gather(*load.tasks)  # the survivors' load completes
    counts = [load.share_answers(i) for i in range(len(load.miners))]
    assert counts[:2] + counts[4:] == [1500] * 4, counts  # the survivors' miners: all answered
    assert all(n < 1500 for n in counts[2:4]), "the front end died too late"

    # the victim's miners come back through another front end with their old session id
    resumed = []
    for old in victim_miners:
        miner = StratumTestMiner(ports[0], old.user)
        await miner.connect()
        resp = await miner.subscribe(old.extranonce1.hex())
        assert resp.ok, resp.error
        assert miner.extranonce1 != old.extranonce1
        assert miner.extranonce1[0] == 0  # front end 0's range
        assert (await miner.authorize()).ok
        job = await miner.wait_job()
        assert job.job_id.startswith("00")
        share = await miner.mine_share()
        assert share.response.ok, share.response.error
        resumed.append(share.hash[::-1].hex())
        await miner.close()

    await finish(load)
    await cluster.drained()
    stored = await cluster.stored()
    acked = load.acked() | set(resumed)
    check_exactly_once(acked, stored)
    assert len(acked) >= 3000


async def test_front_end_cut_off_from_the_broker_keeps_acking_from_its_spool(
    cluster: Cluster,
) -> None:
    link = Cuttable()
    await link.mend()
    await start_all(cluster, {1: f"nats://127.0.0.1:{link.port}"})
    cut_off = cluster.front_ends[1]
    user = await cluster.node.payout_address()
    load = await start_load([fe.stratum_port for fe in cluster.front_ends], user, 1, 3000)
    await until(lambda: load.share_answers(1) >= 500, 60, "front end 1's first answers")
    await link.cut()  # partitioned: front end 1 reaches the node and its miners, not the broker
    at_cut = load.share_answers(1)
    await until(lambda: load.share_answers(1) >= at_cut + 1000, 60, "answers while cut off")
    status, doc = await cut_off.health()
    assert status == 200  # still serving: its spool makes the shares durable
    assert doc["broker_connected"] is False
    assert doc["status"] == "degraded"
    assert isinstance(doc["spool_messages"], int)
    assert doc["spool_messages"] > 0
    await asyncio.sleep(3.0)  # the survivors keep mining meanwhile
    await link.mend()
    await finish(load)
    assert [load.share_answers(i) for i in range(3)] == [3000] * 3
    await cluster.drained()
    check_exactly_once(load.acked(), await cluster.stored())
    assert len(load.acked()) == 9000
    _, doc = await cut_off.health()
    assert doc["broker_connected"] is True


async def test_single_process_health_and_metrics(regtest_node: RegtestNode, tmp_path: Path) -> None:
    http, port = free_port(), free_port()
    proc = Proc("pool", [str(HASHFARM), "pool", "--rpc-url", regtest_node.rpc_url,
                         "--rpc-password", regtest_node.api_key, "--stratum-port", str(port),
                         "--http-port", str(http), "--db", f"sqlite:///{tmp_path / 'p.sqlite3'}"],
                os.environ.copy(), tmp_path / "pool.log", port, http)  # fmt: skip
    proc.start()
    try:
        for _ in range(300):
            with contextlib.suppress(OSError, aiohttp.ClientError):
                status, doc = await proc.health()
                break
            assert _alive(proc), proc.tail()
            await asyncio.sleep(0.1)
        assert status == 200
        assert doc["role"] == "all"
        assert doc["status"] == "ok"
        assert doc["broker_connected"] is None  # no broker in the single process
        assert doc["node_reachable"] is True
        text = await proc.metrics()
        assert "hashfarm_pool_connections" in text
        assert "hashfarm_broker_" not in text  # only a front end has a broker
    finally:
        proc.stop()


async def test_a_ledger_waiting_for_its_broker_reports_it_and_stops_on_sigterm(
    fresh_pg_url: str, tmp_path: Path
) -> None:
    http, dead = free_port(), free_port()  # nothing listens on `dead`: the broker is away
    args = [str(HASHFARM), "pool", "--role", "ledger", "--db", fresh_pg_url,
            "--broker", f"nats://127.0.0.1:{dead}", "--http-port", str(http)]  # fmt: skip
    proc = Proc("ledger", args, os.environ.copy(), tmp_path / "ledger.log", 0, http)
    proc.start()
    try:
        for _ in range(300):
            with contextlib.suppress(OSError, aiohttp.ClientError):
                status, doc = await proc.health()
                break
            assert _alive(proc), proc.tail()
            await asyncio.sleep(0.1)
        assert status == 503
        assert doc["role"] == "ledger"
        assert doc["broker_connected"] is False
        assert proc.popen is not None
        proc.popen.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.popen.wait, 20) == 0, proc.tail()
        assert "waiting for the broker" in proc.log.read_text()
    finally:
        proc.stop()


class PrivateBroker:
    """A NATS JetStream server of this test's own (its store in tmp), so it can be killed."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.store = tmp / "jetstream"
        self.log = tmp / "nats.log"
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        binary = nats_server_binary()
        if binary is None:
            service_missing("nats-server is not installed (the broker-kill test runs its own)")
            return
        args = [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        self.popen = _spawn(args, self.log)
        for _ in range(100):
            if nats_problem_at(self.port) is None:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the private broker did not start: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(20)


def nats_server_binary() -> str | None:
    """The NATS server's executable (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    return found


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def nats_problem_at(port: int) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            hello = s.recv(512)
    except OSError as exc:
        return str(exc)
    return None if hello.startswith(b"INFO ") else "not NATS"


async def test_kill9_of_the_broker_under_load_then_restart(
    regtest_node: RegtestNode, fresh_pg_url: str, tmp_path: Path
) -> None:
    broker = PrivateBroker(tmp_path)
    await broker.start()
    cluster = Cluster(regtest_node, broker.url, fresh_pg_url, tmp_path)
    try:
        await start_all(cluster)
        user = await regtest_node.payout_address()
        ports = [fe.stratum_port for fe in cluster.front_ends]
        load = await start_load(ports, user, 1, 3000)
        await until(lambda: load.answered() >= 1500, 60, "answers before the kill")
        broker.kill9()  # the broker dies under load: every front end spools
        at_kill = load.answered()
        await until(lambda: load.answered() >= at_kill + 1500, 60, "answers without a broker")
        docs = [(await fe.health())[1] for fe in cluster.front_ends]
        assert all(d["broker_connected"] is False for d in docs), docs
        assert sum(int(str(d["spool_messages"])) for d in docs) > 0  # acked from the spools
        await broker.start()  # the same store: what it acknowledged before is still there
        await finish(load)
        assert [load.share_answers(i) for i in range(3)] == [3000] * 3
        await cluster.drained()
        stored = await cluster.stored()
        check_exactly_once(load.acked(), stored)
        assert len(load.acked()) == 9000
    finally:
        cluster.close()
        broker.stop()


async def test_one_header_sent_to_two_front_ends_is_credited_once(cluster: Cluster) -> None:
    # Two front ends given the same id (a misconfiguration, the only way two miners can get
    # one extranonce1): the same header reaches both and both answer true; the ledger
    # stores it once, by its id.
    cluster.extra_env = {"HASHFARM_CLUSTER_LEASE": "false"}  # else the id lease refuses b
    ledger = cluster.add_ledger()
    ledger.start()
    await cluster.wait_ready(ledger)
    a_fe, b_fe = cluster.add_front_end(9), cluster.add_front_end(9)
    for fe in (a_fe, b_fe):
        fe.start()
        await cluster.wait_ready(fe)
    user = await cluster.node.payout_address()
    a = StratumTestMiner(a_fe.stratum_port, f"{user}.twin")
    await a.start()
    b = StratumTestMiner(b_fe.stratum_port, f"{user}.twin")
    await b.connect()
    assert (await b.subscribe(a.extranonce1.hex())).ok  # front end b resumes a's value
    assert b.extranonce1 == a.extranonce1
    assert (await b.authorize()).ok
    job_b = await b.wait_job()
    job_a = a.job
    assert job_a is not None
    assert (job_a.prev_hash, job_a.coinb1, job_a.coinb2, job_a.merkle_branch) == (
        job_b.prev_hash, job_b.coinb1, job_b.coinb2, job_b.merkle_branch
    )  # fmt: skip
    assert a.difficulty is not None
    network = bits_to_difficulty(job_a.bits)
    shares: list[str] = []
    while len(shares) < 20:
        later = max(job_a, job_b, key=lambda j: j.time)  # ntime valid on both front ends
        header, en2 = a.grind(later, difficulty_to_target(a.difficulty))
        if hash_difficulty(sha256d(header)) >= network:
            continue  # a block would move the tip under the second submission
        first = await a.submit(job_a, header, en2)
        assert first.ok, first.error
        again = await b.submit(job_b, header, en2)
        assert again.ok, again.error  # b has never seen it: accepted and acknowledged
        shares.append(sha256d(header)[::-1].hex())
    await a.close()
    await b.close()
    await cluster.drained()
    stored = await cluster.stored()
    check_exactly_once(set(shares), stored)
    assert sorted(s for s, _, _ in stored) == sorted(shares)  # 40 acknowledgements, 20 rows
