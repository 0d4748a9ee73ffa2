"""The miner's sans-I/O Stratum session: handshake, job binding, staleness, verdicts."""

from __future__ import annotations

from dataclasses import replace

from hashfarm.chain.pow import difficulty_to_target
from hashfarm.miner import protocol as p
from hashfarm.stratum import messages as m
from hashfarm.stratum.codec import ErrorCode, Notification, Request, Response, decode, encode
from hashfarm.stratum.work import Job


def _client(mask: int | None = 0x1FFFE000, suggest: float | None = None) -> p.ClientProtocol:
    return p.ClientProtocol(
        "acct.rig", "x", user_agent="t/1", version_mask=mask, suggest_difficulty=suggest
    )


def _handshake(client: p.ClientProtocol, en1: str = "aabbccdd") -> list[p.Event]:
    reqs = client.opening(now=0.0)
    events: list[p.Event] = []
    for req in reqs:
        if req.method == m.CONFIGURE:
            events += client.receive(m.result(req.id, m.configure_result(0x00FFE000)), 0.1)
        elif req.method == m.SUBSCRIBE:
            events += client.receive(
                m.result(req.id, m.subscribe_result(bytes.fromhex(en1), 4, "s1")), 0.1
            )
        elif req.method == m.AUTHORIZE:
            events += client.receive(m.result(req.id, True), 0.1)
    return events


def _share(work: p.MinerJob, version: int | None = None) -> p.FoundShare:
    v = work.job.version if version is None else version
    return p.FoundShare(work, b"\x00\x00\x00\x01", work.job.time, 42, v, bytes(32), 1.0)


def test_opening_order_and_wire_form() -> None:
    reqs = _client(suggest=0.5).opening(now=0.0)
    assert [r.method for r in reqs] == [m.CONFIGURE, m.SUBSCRIBE, m.AUTHORIZE, m.SUGGEST_DIFFICULTY]
    assert len({r.id for r in reqs}) == 4
    assert [r.method for r in _client(mask=None).opening(0.0)] == [m.SUBSCRIBE, m.AUTHORIZE]
    assert decode(encode(reqs[1])) == reqs[1]


def test_handshake_events_and_negotiated_mask() -> None:
    client = _client()
    events = _handshake(client)
    assert p.Configured(0x00FFE000) in events
    assert p.Subscribed(bytes.fromhex("aabbccdd"), 4, "s1", resumed=False) in events
    assert p.Authorized("acct.rig") in events
    assert client.version_mask == 0x00FFE000  # the pool's mask, within what we offered


def test_notify_binds_state_and_clean_jobs_drops_old_work(real_job: Job) -> None:
    client = _client()
    _handshake(client)
    client.receive(m.set_difficulty(0.001), 1.0)
    [first] = client.receive(m.notify(real_job), 1.0)
    assert isinstance(first, p.NewWork)
    assert first.clean
    assert first.work.difficulty == 0.001
    assert first.work.share_target == difficulty_to_target(0.001)
    assert first.work.extranonce1 == bytes.fromhex("aabbccdd")
    assert first.work.version_mask == 0x00FFE000
    second_job = replace(real_job, job_id="j2", clean_jobs=False)
    [second] = client.receive(m.notify(second_job), 2.0)
    assert isinstance(second, p.NewWork)
    assert not second.clean
    assert client.is_current(first.work)  # same tip, not clean: old job still submittable
    third_job = replace(real_job, job_id="j3", clean_jobs=True)
    [third] = client.receive(m.notify(third_job), 3.0)
    assert isinstance(third, p.NewWork)
    assert third.clean
    assert not client.is_current(first.work)
    assert client.submit(_share(first.work), 3.1) is None  # stale: never sent
    assert client.submit(_share(third.work), 3.1) is not None


def test_new_prevhash_is_clean_even_without_the_flag(real_job: Job) -> None:
    client = _client()
    _handshake(client)
    [a] = client.receive(m.notify(real_job), 1.0)
    moved = replace(real_job, job_id="j9", prev_hash=bytes(32), clean_jobs=False)
    [b] = client.receive(m.notify(moved), 2.0)
    assert isinstance(a, p.NewWork)
    assert isinstance(b, p.NewWork)
    assert b.clean
    assert not client.is_current(a.work)


def test_submit_params_and_verdicts(real_job: Job) -> None:
    client = _client()
    _handshake(client)
    [ev] = client.receive(m.notify(real_job), 1.0)
    assert isinstance(ev, p.NewWork)
    plain = client.submit(_share(ev.work), 2.0)
    rolled = client.submit(_share(ev.work, version=real_job.version | 0x4000), 2.0)
    assert plain is not None
    assert rolled is not None
    assert list(plain.params) == ["acct.rig", "j1", "00000001", f"{real_job.time:08x}", "0000002a"]
    assert rolled.params[5] == "00004000"
    [ok] = client.receive(m.result(plain.id, True), 2.25)
    assert ok == p.ShareResult(_share(ev.work), True, None, 0.25)
    [bad] = client.receive(m.error(rolled.id, ErrorCode.LOW_DIFFICULTY), 2.5)
    assert isinstance(bad, p.ShareResult)
    assert not bad.accepted
    assert bad.reason == "[23] Low difficulty share"


def test_difficulty_and_mask_changes_rebind_the_current_job(real_job: Job) -> None:
    client = _client()
    _handshake(client)
    client.receive(m.set_difficulty(4.0), 1.0)
    client.receive(m.notify(real_job), 1.0)
    lower = client.receive(m.set_difficulty(2.0), 2.0)
    assert lower[0] == p.DifficultyChanged(2.0)
    rebound = lower[1]
    assert isinstance(rebound, p.NewWork)
    assert not rebound.clean
    assert rebound.work.difficulty == 4.0  # the higher of job-time and current difficulty
    [masked] = client.receive(m.set_version_mask(0x1FFFE000), 3.0)
    assert isinstance(masked, p.NewWork)
    assert masked.work.version_mask == 0x1FFFE000


def test_set_extranonce_applies_from_the_next_job(real_job: Job) -> None:
    client = _client()
    _handshake(client)
    [a] = client.receive(m.notify(real_job), 1.0)
    assert client.receive(m.set_extranonce(b"\x09\x09", 6), 2.0) == []
    [b] = client.receive(m.notify(replace(real_job, job_id="j2")), 3.0)
    assert isinstance(a, p.NewWork)
    assert isinstance(b, p.NewWork)
    assert a.work.extranonce1 == bytes.fromhex("aabbccdd")
    assert (b.work.extranonce1, b.work.extranonce2_size) == (b"\x09\x09", 6)


def test_reconnect_message_and_session_resume(real_job: Job) -> None:
    client = _client()
    _handshake(client)
    [ev] = client.receive(Notification("client.reconnect", ("127.0.0.1", 4444, 1)), 1.0)
    assert ev == p.ReconnectRequested("127.0.0.1", 4444, 1.0)
    reqs = client.opening(now=2.0)
    sub = next(r for r in reqs if r.method == m.SUBSCRIBE)
    assert sub.params == ("t/1", "s1")
    events = _handshake(client)
    assert p.Subscribed(bytes.fromhex("aabbccdd"), 4, "s1", resumed=True) in events
    events = _handshake(client, en1="01010101")
    assert p.Subscribed(bytes.fromhex("01010101"), 4, "s1", resumed=False) in events


def test_refusals_and_bad_messages_are_events_not_crashes(real_job: Job) -> None:
    client = _client()
    reqs = client.opening(0.0)
    auth = next(r for r in reqs if r.method == m.AUTHORIZE)
    [fatal] = client.receive(m.error(auth.id, ErrorCode.UNAUTHORIZED), 0.1)
    assert isinstance(fatal, p.Fatal)
    assert "Unauthorized worker" in fatal.reason
    [early] = client.receive(m.notify(real_job), 0.2)  # before subscribe was answered
    assert isinstance(early, p.PoolMessage)
    assert early.problem
    [junk] = client.receive(Notification(m.SET_DIFFICULTY, ("high",)), 0.3)
    assert isinstance(junk, p.PoolMessage)
    assert "difficulty" in junk.text
    [stray] = client.receive(Response(999, True), 0.4)
    assert isinstance(stray, p.PoolMessage)
    [note] = client.receive(Request(5, m.SHOW_MESSAGE, ("maintenance at 12:00",)), 0.5)
    assert note == p.PoolMessage("maintenance at 12:00")


def test_refused_subscribe_asks_for_a_retry() -> None:
    client = _client()
    sub = next(r for r in client.opening(0.0) if r.method == m.SUBSCRIBE)
    [retry] = client.receive(m.error(sub.id, ErrorCode.OTHER, "pool full"), 0.1)
    assert retry == p.Retry("mining.subscribe refused: [20] pool full")
