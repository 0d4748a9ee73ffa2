"""The Stratum methods of one session, without sockets: BIP 310, resume, errors, ordering.

The session talks to a `LocalHost`: the real JobBook (a template from a mainnet block), the
real extranonce allocator and the real address code; only the clock is simulated.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pool_helpers import template_of

from hashfarm.chain.address import address_to_script
from hashfarm.chain.block import Block
from hashfarm.pool.jobs import JobBook, payout_outputs
from hashfarm.pool.server import ExtranonceAllocator
from hashfarm.pool.session import Session
from hashfarm.pool.settings import PoolSettings, VardiffSettings
from hashfarm.pool.shares import Verdict
from hashfarm.stratum.codec import Notification, Request, decode
from hashfarm.stratum.work import u32_hex

ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


class LocalHost:
    """A SessionHost built from the pool's real parts, answering shares directly."""

    def __init__(self, block: Block) -> None:
        self.settings = PoolSettings(network="mainnet")
        self.jobs = JobBook(
            payout_outputs(None, 0.0), tag=b"/t/", extranonce2_size=8, generations_kept=4
        )
        self.jobs.set_template(template_of(block))
        self.extranonces = ExtranonceAllocator(300.0)
        self.clock = 1000.0
        self.verdicts: list[Verdict] = []

    def claim_extranonce1(self, session: Session, wanted: bytes | None) -> bytes:
        return self.extranonces.claim(session, wanted, self.clock)

    def payout_for(self, username: str) -> tuple[str, bytes]:
        account = username.split(".", 1)[0]
        return account, address_to_script(account, "mainnet")

    def joined(self, session: Session) -> None:
        assert session.payout_script is not None
        session.send_job(self.jobs.job_for(session.payout_script))

    def handle_verdict(self, session: Session, msg_id: Any, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
        if verdict.accepted:
            session.reply(msg_id, True)
        else:
            session.reply_error(msg_id, verdict.code, verdict.message)

    def now(self) -> float:
        return self.clock


class Wire:
    """What the session wrote, decoded."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.lines.append(data)

    def take(self) -> list[dict[str, Any]]:
        out = [orjson.loads(line) for line in self.lines]
        self.lines.clear()
        return out


@pytest.fixture
def host(small_block: Block) -> LocalHost:
    return LocalHost(small_block)


def new_session(host: LocalHost) -> tuple[Session, Wire]:
    wire = Wire()
    return Session(host, wire, "127.0.0.1:1", 1), wire  # type: ignore[arg-type]


def call(session: Session, method: str, *params: Any, msg_id: Any = 1) -> None:
    message = (
        Request(msg_id, method, params) if msg_id is not None else Notification(method, params)
    )
    session.handle(message)


def test_configure_answers_every_extension(host: LocalHost) -> None:
    s, wire = new_session(host)
    params = {"version-rolling.mask": "00ffff00", "minimum-difficulty.value": 64}
    call(
        s,
        "mining.configure",
        ["version-rolling", "minimum-difficulty", "subscribe-extranonce", "info"],
        params,
    )
    [resp] = wire.take()
    assert resp["error"] is None
    assert resp["result"] == {
        "version-rolling": True,
        "version-rolling.mask": "00ffe000",  # pool 1fffe000 AND miner 00ffff00
        "minimum-difficulty": True,
        "subscribe-extranonce": True,
        "info": False,
    }
    assert s.version_mask == 0x00FFE000
    assert s.vardiff.difficulty == 64.0  # the floor lifted the initial difficulty 1.0
    assert s.extranonce_subscribed


def test_configure_default_mask_is_the_pools(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.configure", ["version-rolling"], {})
    assert wire.take()[0]["result"]["version-rolling.mask"] == "1fffe000"


def test_subscribe_authorize_then_difficulty_before_notify(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.subscribe", "bitaxe/2.1", msg_id=1)
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x", msg_id=2)
    sub, auth, set_diff, notify = wire.take()
    [subs, en1, en2_size] = sub["result"]
    assert subs == [["mining.set_difficulty", en1], ["mining.notify", en1]]
    assert len(bytes.fromhex(en1)) == 4
    assert en2_size == 8
    assert auth == {"id": 2, "result": True, "error": None}
    assert set_diff["method"] == "mining.set_difficulty"
    assert set_diff["params"] == [1.0]
    assert notify["method"] == "mining.notify"
    assert notify["params"][8] is True


def test_session_resume_returns_the_same_extranonce1_when_free(host: LocalHost) -> None:
    a, wire_a = new_session(host)
    call(a, "mining.subscribe", "miner")
    en1 = wire_a.take()[0]["result"][1]
    b, wire_b = new_session(host)
    call(b, "mining.subscribe", "miner", en1)  # a is still connected: not free
    assert wire_b.take()[0]["result"][1] != en1
    host.extranonces.release(a.extranonce1, host.clock)
    c, wire_c = new_session(host)
    call(c, "mining.subscribe", "miner", en1)
    assert wire_c.take()[0]["result"][1] == en1
    d, wire_d = new_session(host)
    call(d, "mining.subscribe", "miner")  # a newcomer never gets a reserved one
    assert wire_d.take()[0]["result"][1] not in (en1, b.extranonce1.hex())


def test_authorize_rejects_an_address_of_another_network(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.authorize", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx.w", "x")
    [resp] = wire.take()
    assert resp["result"] is None
    assert resp["error"][0] == 24
    assert "tb1" in resp["error"][1]


@pytest.mark.parametrize("value", [2048, 2048.0])
def test_suggest_difficulty_before_authorize(host: LocalHost, value: float) -> None:
    s, wire = new_session(host)
    call(s, "mining.suggest_difficulty", value, msg_id=None)  # sent as a notification
    call(s, "mining.subscribe", "miner", msg_id=1)
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x", msg_id=2)
    out = wire.take()
    assert [o.get("id") for o in out[:2]] == [1, 2]  # no reply to the notification
    assert out[2] == {"id": None, "method": "mining.set_difficulty", "params": [2048.0]}


def test_suggest_difficulty_after_authorize_is_sent(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.subscribe", "miner")
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x")
    wire.take()
    call(s, "mining.suggest_difficulty", 4.5, msg_id=9)
    set_diff, resp = wire.take()
    assert set_diff["params"] == [4.5]
    assert resp == {"id": 9, "result": True, "error": None}


@pytest.mark.parametrize("value", [1e-12, 0.5, 1])
def test_suggestions_below_the_mainnet_floor_get_the_floor(host: LocalHost, value: float) -> None:
    s, wire = new_session(host)
    call(s, "mining.suggest_difficulty", 64)
    call(s, "mining.subscribe", "miner")
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x")
    call(s, "mining.suggest_difficulty", value, msg_id=9)
    call(s, "mining.configure", ["minimum-difficulty"], {"minimum-difficulty.value": value})
    sent = [o["params"][0] for o in wire.take() if o.get("method") == "mining.set_difficulty"]
    assert sent == [64.0, 1.0]  # never below mainnet's floor of 1, whatever was asked
    assert s.vardiff.difficulty == 1.0


def test_the_verdict_keeps_the_difficulty_a_retarget_by_that_share_replaced(
    small_block: Block,
) -> None:
    host = LocalHost(small_block)
    # initial 1e-12: every hash meets it; one share per ms wanted, a retarget at every share
    fast = VardiffSettings(initial=1e-12, minimum=1e-15, retarget_shares=1, target_interval=0.001)
    host.settings = PoolSettings(network="mainnet", vardiff=fast)
    s, wire = new_session(host)
    call(s, "mining.subscribe", "miner")
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x")
    job = s.last_job
    assert job is not None
    wire.take()
    host.clock += 10.0  # one share in 10 s against one per ms: this very share lowers it
    share = [f"{ADDRESS}.rig", job.job_id, "00" * 8, u32_hex(job.work.time), "00000000"]
    call(s, "mining.submit", *share, msg_id=7)
    [verdict] = host.verdicts
    assert verdict.accepted
    set_diff, ack = wire.take()
    assert set_diff["params"] == [1e-12 / 8]  # the retarget the share triggered...
    assert ack["result"] is True
    assert verdict.difficulty == 1e-12  # ...does not change what it was judged at
    assert s.difficulty_for(job) == 1e-12 / 8  # (what the ledger used to record)


def test_unknown_method_gets_error_20(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.frobnicate", msg_id=5)
    [resp] = wire.take()
    assert resp["id"] == 5
    assert resp["error"][0] == 20
    assert "mining.frobnicate" in resp["error"][1]


def test_bad_params_get_an_error_not_a_dead_session(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.authorize", msg_id=3)
    call(s, "mining.configure", "nonsense", msg_id=4)
    r3, r4 = wire.take()
    assert r3["error"][0] == 20
    assert r4["error"][0] == 20
    call(s, "mining.subscribe", "miner", msg_id=6)
    assert wire.take()[0]["error"] is None


def test_submit_before_subscribe_and_unauthorized_worker(host: LocalHost) -> None:
    s, wire = new_session(host)
    share = ["w", "1", "00" * 8, "00000000", "00000000"]
    call(s, "mining.submit", *share)
    assert wire.take()[0]["error"][0] == 25
    call(s, "mining.subscribe", "miner")
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x")
    wire.take()
    call(s, "mining.submit", *share)
    [resp] = wire.take()
    assert resp["error"][0] == 24
    assert host.verdicts[-1].reason == "unauthorized"


def test_extranonce_subscribe_and_get_transactions(host: LocalHost, small_block: Block) -> None:
    s, wire = new_session(host)
    call(s, "mining.extranonce.subscribe", msg_id=1)
    call(s, "mining.subscribe", "miner", msg_id=2)
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x", msg_id=3)
    job_id = wire.take()[-1]["params"][0]
    call(s, "mining.get_transactions", job_id, msg_id=4)
    [resp] = wire.take()
    # txids in display order, not the raw transactions (ckpool: a count; see configuration.md)
    assert resp["result"] == [tx.txid()[::-1].hex() for tx in small_block.transactions[1:]]
    call(s, "mining.get_transactions", job_id, msg_id=5)
    assert wire.take()[0]["error"][:2] == [20, "too soon: ask again in 30 s"]
    host.clock += host.settings.stratum.get_transactions_interval
    call(s, "mining.get_transactions", "nope", msg_id=6)
    assert wire.take()[0]["error"][0] == 21


def test_job_of_another_payout_script_is_not_found(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.subscribe", "miner")
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x")
    wire.take()
    other = host.jobs.job_for(bytes.fromhex("0014") + bytes(20))
    call(s, "mining.submit", f"{ADDRESS}.rig", other.job_id, "00" * 8, "00000000", "00000000")
    assert wire.take()[0]["error"][0] == 21
    assert host.verdicts[-1].reason == "unknown-job"


def test_difficulty_change_applies_to_the_next_job(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.subscribe", "miner")
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x")
    wire.take()
    first = s.last_job
    call(s, "mining.suggest_difficulty", 512)
    assert s.difficulty_for(first) == 1.0  # in flight: held to the old, lower difficulty
    host.jobs.set_template(host.jobs.template)  # type: ignore[arg-type]
    assert s.payout_script is not None
    s.send_job(host.jobs.job_for(s.payout_script))
    assert s.difficulty_for(s.last_job) == 512.0
    assert s.difficulty_for(first) == 1.0


def test_every_line_is_one_json_message(host: LocalHost) -> None:
    s, wire = new_session(host)
    call(s, "mining.subscribe", "miner")
    call(s, "mining.authorize", f"{ADDRESS}.rig", "x")
    for line in wire.lines:
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        decode(line)
