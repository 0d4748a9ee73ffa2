"""The proxy linked to hosting (`--hosting-db`): a worker name is a hosting machine id and
mines for the customer of its assignment in force; a name with none is refused. Real pieces:
a SQLite hosting store filled by the `customer`/`contract` commands, the proxy on real
sockets, a scripted upstream that accepts every share, the work store and its export."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from click.testing import CliRunner

from hashfarm.cli.main import cli
from hashfarm.hosting.promise import parse_work_csv
from hashfarm.proxy.hosted import customers_at, keep_reading, read_customers
from hashfarm.proxy.server import Proxy
from hashfarm.proxy.settings import ProxySettings, Upstream
from hashfarm.proxy.store import WorkStore, work_csv
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import LineBuffer, Request, decode, encode
from hashfarm.stratum.work import Job
from unit.pool.stratum_client import StratumTestMiner

DIFF = 2.0**-26  # about 64 hashes a share
JOB = Job("j1", bytes(32), b"\x01" * 40, b"\x02" * 30, (), 0x20000000, 0x207FFFFF, 1_700_000_000,
          True)  # fmt: skip
NOV1 = int(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp())
NOV15 = NOV1 + 14 * 86_400


class AcceptingPool:
    """Answers the handshake, sends DIFF and one job, accepts every submit; records users."""

    def __init__(self) -> None:
        self.users: list[str] = []
        self.submits = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = LineBuffer(65536)
        while data := await reader.read(65536):
            for line in buffer.feed(data):
                req = decode(line)
                assert isinstance(req, Request)
                if req.method == m.CONFIGURE:
                    writer.write(encode(m.result(req.id, m.configure_result(0x1FFFE000))))
                elif req.method == m.SUBSCRIBE:
                    res = m.subscribe_result(bytes.fromhex("0a0b0c0d"), 8, "s1")
                    writer.write(encode(m.result(req.id, res)))
                elif req.method == m.AUTHORIZE:
                    self.users.append(str(req.params[0]))
                    writer.write(encode(m.result(req.id, True)))
                    writer.write(encode(m.set_difficulty(DIFF)) + encode(m.notify(JOB)))
                elif req.method == m.SUBMIT:
                    self.submits += 1
                    writer.write(encode(m.result(req.id, True)))


def hosting_db(tmp_path: Path) -> str:
    """acme hosts m1 and m2 from Nov 1; m2 moves to beta on Nov 15."""
    db = f"sqlite:///{tmp_path / 'hosting.sqlite3'}"
    runner = CliRunner()

    def hf(*args: str) -> None:
        result = runner.invoke(cli, [*args, "--db", db], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    for cid in ("acme", "beta"):
        hf("customer", "add", cid, "--name", cid.title(), "--at", "2026-10-01T00:00:00Z")
        hf("contract", "add", f"{cid}-np", "--customer", cid, "--method", "nameplate",
           "--rate", "0.05", "--at", "2026-10-01T00:00:00Z")  # fmt: skip
    for mid in ("m1", "m2"):
        hf("contract", "assign", mid, "acme-np", "--from", "2026-11-01T00:00:00Z",
           "--nameplate-w", "3500")  # fmt: skip
    hf("contract", "assign", "m2", "beta-np", "--from", "2026-11-15T00:00:00Z",
       "--nameplate-w", "3500")  # fmt: skip
    return db


def test_the_assignment_in_force(tmp_path: Path) -> None:
    db = hosting_db(tmp_path)
    assert read_customers(db, NOV1 - 1) == {}
    assert read_customers(db, NOV1) == {"m1": "acme", "m2": "acme"}
    assert read_customers(db, NOV15 - 1) == {"m1": "acme", "m2": "acme"}
    assert read_customers(db, NOV15) == {"m1": "acme", "m2": "beta"}
    assert customers_at([], NOV15) == {}


async def test_hosted_machines_mine_for_their_customers(tmp_path: Path) -> None:
    db = hosting_db(tmp_path)
    pool = AcceptingPool()
    server = await asyncio.start_server(pool.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = WorkStore(tmp_path / "work.sqlite3")
    settings = ProxySettings(
        Upstream("127.0.0.1", port), "", port=0, per_customer=True,
        user_template="addr.{customer}", customers=read_customers(db, NOV1),
    )  # fmt: skip
    proxy = Proxy(settings, store)
    await proxy.start()
    miners: list[StratumTestMiner] = []
    try:
        for name in ("m1", "m2"):
            miner = StratumTestMiner(proxy.port, name)
            miners.append(miner)
            await miner.start()
            assert (await miner.mine_share()).response.ok
        # A name hosting does not know is refused: it mines for nobody.
        stranger = StratumTestMiner(proxy.port, "acme.m1")
        miners.append(stranger)
        await stranger.connect()
        assert (await stranger.subscribe()).ok
        res = await stranger.authorize()
        assert res.error is not None
        assert "is not hosted for any customer" in res.error.message
        assert proxy.stats.accepted_by_customer == {"acme": 2}
        assert proxy.stats.work_by_machine == {"m1": DIFF, "m2": DIFF}
        assert set(proxy.channels) == {"acme"}
        assert pool.users == ["addr.acme"]
        # m2 moves to beta (a reload of the assignments): it mines for beta from its next
        # authorize; its open connection keeps acme's session until it reconnects.
        proxy.set_customers(read_customers(db, NOV15))
        assert (await miners[1].mine_share()).response.ok
        assert proxy.stats.accepted_by_customer == {"acme": 3}
        await miners[1].close()
        moved = StratumTestMiner(proxy.port, "m2")
        miners.append(moved)
        await moved.start()
        assert (await moved.mine_share()).response.ok
        assert proxy.stats.accepted_by_customer == {"acme": 3, "beta": 1}
        assert set(proxy.channels) == {"acme", "beta"}
        assert sorted(pool.users) == ["addr.acme", "addr.beta"]
        assert pool.submits == 4
        await store.flush()
        rows = store.rows()
        # Stored per customer and hosting machine id; the export is keyed by those ids, as
        # `farm report --work` and the bills key their machines.
        assert {(r[1], r[2]) for r in rows} == {("acme", "m1"), ("acme", "m2"), ("beta", "m2")}
        work = parse_work_csv(work_csv(rows))
        assert {mid: w for (mid, _day), w in work.items()} == {"m1": DIFF, "m2": 3 * DIFF}
    finally:
        for miner in miners:
            await miner.close()
        await proxy.stop()
        store.close()
        server.close()


async def test_the_assignments_are_read_again(tmp_path: Path) -> None:
    db = hosting_db(tmp_path)
    seen: list[dict[str, str]] = []
    task = asyncio.create_task(keep_reading(db, 0.05, seen.append))
    try:
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert seen[0] == {"m1": "acme", "m2": "beta"}  # the clock is past Nov 15, 2026


def test_a_bad_hosting_db_is_refused_before_listening() -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["proxy", "--upstream", "h:1", "--user", "u",
                              "--hosting-db", "nosuch://x"])  # fmt: skip
    assert bad.exit_code == 1
    assert "--hosting-db: database URL must be" in bad.output
