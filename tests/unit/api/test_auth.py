"""The admin login's parts without a socket: scrypt hashes, the password file, sessions'
expiry and bound, the login limiter's windows and where a login may send the browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashfarm.api import auth
from hashfarm.api.auth import (
    LOGIN_ATTEMPTS_PER_MINUTE,
    LOGIN_FAILURES_PER_IP,
    LOGIN_WINDOW_S,
    SESSION_IDLE_S,
    SESSION_MAX_S,
    SESSIONS_MAX,
    LoginLimiter,
    Sessions,
    hash_password,
    load_password_file,
    parse_hash,
    safe_next,
    set_password,
    verify_password,
)
from hashfarm.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_hash_verifies_its_password_only_and_carries_its_parameters() -> None:
    stored = hash_password("pässword 1", n=2**10)
    n, r, p, salt, digest = parse_hash(stored)
    assert (n, r, p, len(salt), len(digest)) == (2**10, 8, 1, 16, 32)
    assert verify_password("pässword 1", stored)
    assert not verify_password("pässword 2", stored)
    assert not verify_password("pässword 1" * 200, stored)  # over the length cap
    assert hash_password("pässword 1", n=2**10) != stored  # a fresh salt each time
    assert "pässword" not in stored


@pytest.mark.parametrize(
    "bad",
    [
        "plain",
        "bcrypt$1$2$3$AAAA$AAAA",
        "scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",  # N not a power of two
        "scrypt$1048576$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",  # 1 GiB of memory
        "scrypt$1024$8$1$!!!$AAAAAAAAAAAAAAAAAAAAAA==",
        "scrypt$1024$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAA==",  # 3-byte salt
    ],
)
def test_a_malformed_or_too_costly_hash_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # each has its own message
        parse_hash(bad)


def test_the_password_file_round_trip_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    assert set_password(path, "alice", "first password")
    assert set_password(path, "bob", "second password")
    assert not set_password(path, "alice", "third password")
    users = load_password_file(str(path))
    assert sorted(users) == ["alice", "bob"]
    assert verify_password("third password", users["alice"])
    assert load_password_file(None) == {}
    with pytest.raises(ValueError, match="user name"):
        set_password(path, "al ice", "first password")
    with pytest.raises(ValueError, match="10 to 1024"):
        set_password(path, "carol", "short")
    path.write_text("# operators\n\nalice\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3: expected user:scrypt"):
        load_password_file(str(path))
    path.write_text("# nobody\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no user"):
        load_password_file(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        load_password_file(str(tmp_path / "absent"))


def test_sessions_expire_when_idle_or_old_and_are_bounded() -> None:
    clock = Clock()
    sessions = Sessions(clock)
    sid, session = sessions.create("alice")
    assert sessions.get(sid) is session
    assert sessions.get(sid + "x") is None
    assert sessions.get(None) is None
    clock.now += SESSION_IDLE_S - 1
    assert sessions.get(sid) is session  # used: the idle clock restarts
    clock.now += SESSION_IDLE_S + 1
    assert sessions.get(sid) is None
    sid, _ = sessions.create("alice")
    for _ in range(int(SESSION_MAX_S // (SESSION_IDLE_S / 2)) + 1):
        clock.now += SESSION_IDLE_S / 2
        sessions.get(sid)
    assert sessions.get(sid) is None  # never idle, but too old
    first, _ = sessions.create("alice")
    for _ in range(SESSIONS_MAX):
        sessions.create("bob")
    assert len(sessions) == SESSIONS_MAX
    assert sessions.get(first) is None  # the oldest made room
    sid, _ = sessions.create("carol")
    sessions.drop(sid)
    assert sessions.get(sid) is None


def test_the_limiter_counts_failures_per_address_and_all_attempts() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock)
    for _ in range(LOGIN_FAILURES_PER_IP):
        assert limiter.retry_after("198.51.100.1") == 0
        limiter.failed("198.51.100.1")
    wait = limiter.retry_after("198.51.100.1")
    assert 0 < wait <= LOGIN_WINDOW_S
    assert limiter.retry_after("198.51.100.2") == 0  # another address is not held up
    clock.now += LOGIN_WINDOW_S + 1
    assert limiter.retry_after("198.51.100.1") == 0
    limiter.failed("198.51.100.1")
    limiter.succeeded("198.51.100.1")  # a success clears the address's failures
    clock.now += 61
    for i in range(LOGIN_ATTEMPTS_PER_MINUTE):
        assert limiter.retry_after(f"203.0.113.{i}") == 0
    assert 0 < limiter.retry_after("203.0.113.250") <= 60  # all together: too many


def test_tracked_addresses_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "TRACKED_IPS_MAX", 10)
    limiter = LoginLimiter(Clock())
    for i in range(50):
        limiter.failed(f"10.0.0.{i}")
    assert len(limiter._failures) == 10


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "/admin"),
        ("/admin/bans?x=1", "/admin/bans?x=1"),
        ("https://evil.example/", "/admin"),
        ("//evil.example/", "/admin"),
        ("/\\evil.example", "/admin"),
        ("/admin\r\nSet-Cookie: x=1", "/admin"),
        ("admin", "/admin"),
    ],
)
def test_a_login_only_goes_back_to_a_local_path(raw: str | None, expected: str) -> None:
    assert safe_next(raw) == expected
