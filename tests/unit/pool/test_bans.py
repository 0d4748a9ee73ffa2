"""The ban engine's rules, with time passed in: thresholds, windows, expiry, bounded memory."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hashfarm.errors import ConfigError
from hashfarm.pool.bans import Ban, BanList
from hashfarm.pool.settings import BanSettings, PoolSettings

RULES = BanSettings(
    seconds=600.0,
    window=60.0,
    junk_lines=10,
    failed_authorizations=5,
    share_window=300.0,
    invalid_ratio=0.9,
    invalid_min_shares=100,
    exempt_loopback=True,
    max_tracked_ips=16,
)
IP = "203.0.113.7"


def test_junk_lines_over_the_limit_within_the_window_ban_the_ip() -> None:
    bans, told = BanList(RULES), []
    bans.on_ban = told.append
    assert bans.junk(IP, 1000.0, 10) is None  # at the limit: not yet
    ban = bans.junk(IP, 1001.0)
    assert ban == Ban(IP, "junk-lines", 1001.0, 1601.0)
    assert told == [ban]
    assert bans.banned(IP, 1600.9) == ban
    assert bans.banned(IP, 1601.0) is None  # expired
    assert bans.active(1100.0) == [ban]


def test_counts_start_again_in_a_new_window() -> None:
    bans = BanList(RULES)
    assert bans.junk(IP, 1000.0, 10) is None
    assert bans.junk(IP, 1061.0, 10) is None  # the first window has ended
    assert bans.banned(IP, 1061.0) is None
    assert bans.failed_authorize(IP, 1062.0, 5) is None
    assert bans.failed_authorize(IP, 1063.0) is not None


def test_invalid_share_ratio_needs_enough_shares() -> None:
    bans = BanList(RULES)
    assert bans.shares(IP, 0, 99, 1000.0) is None  # all invalid, but too few to judge
    ban = bans.shares(IP, 0, 1, 1001.0)
    assert ban is not None
    assert ban.reason == "invalid-shares"
    other = "198.51.100.1"
    assert bans.shares(other, 20, 180, 1000.0) is None  # 90 %: not over the ratio
    assert bans.shares(other, 0, 1, 1000.0) is not None  # 181 / 201 > 90 %
    third = "198.51.100.2"
    assert bans.shares(third, 500, 0, 1000.0) is None
    assert bans.shares(third, 0, 4000, 1000.0) is None  # 4,000 of 4,500 invalid: 88.9 %
    assert bans.shares(third, 0, 600, 1000.0) is not None  # 4,600 of 5,100: 90.2 %
    fourth = "198.51.100.3"
    assert bans.shares(fourth, 10, 80, 1000.0) is None
    assert bans.shares(fourth, 0, 80, 1301.0) is None  # the share window restarted


def test_loopback_is_exempt_only_when_set() -> None:
    bans = BanList(RULES)
    for ip in ("127.0.0.1", "127.0.0.2", "::1"):
        assert bans.exempt(ip)
        assert bans.junk(ip, 1000.0, 1000) is None
    strict = BanList(replace(RULES, exempt_loopback=False))
    assert not strict.exempt("127.0.0.2")
    assert strict.junk("127.0.0.2", 1000.0, 11) is not None


def test_disabled_counts_nothing_but_manual_bans_hold() -> None:
    bans = BanList(replace(RULES, enabled=False))
    assert bans.junk(IP, 1000.0, 10_000) is None
    ban = bans.ban(IP, "manual", 1000.0, seconds=5.0)
    assert ban.until == 1005.0
    assert bans.banned(IP, 1004.0) == ban


def test_manual_ban_lift_and_bad_arguments() -> None:
    bans = BanList(RULES)
    bans.ban(IP, "manual", 1000.0)
    assert bans.lift(IP)
    assert not bans.lift(IP)
    assert bans.banned(IP, 1000.0) is None
    with pytest.raises(ValueError, match="unknown ban reason"):
        bans.ban(IP, "because", 1000.0)
    with pytest.raises(ValueError, match="positive"):
        bans.ban(IP, "manual", 1000.0, seconds=0.0)


def test_memory_is_bounded_and_expired_entries_are_purged() -> None:
    bans = BanList(RULES)
    for n in range(1000):  # an attacker spread over many addresses
        bans.junk(f"10.0.{n // 256}.{n % 256}", 1000.0)
        bans.ban(f"10.1.{n // 256}.{n % 256}", "manual", 1000.0, seconds=10.0)
    assert bans.tracked <= 2 * RULES.max_tracked_ips
    assert len(bans.active(1000.0)) == RULES.max_tracked_ips  # the newest ones
    bans.purge(1000.0 + RULES.share_window + 11.0)
    assert bans.tracked == 0
    assert bans.active(2000.0) == []


def test_settings_reject_values_that_cannot_work() -> None:
    with pytest.raises(ConfigError, match=r"bans\.invalid_ratio"):
        replace(PoolSettings(), bans=replace(RULES, invalid_ratio=1.5)).validate()
    st = replace(PoolSettings().stratum, max_line_unauthorized=100_000)
    with pytest.raises(ConfigError, match=r"stratum\.max_line_unauthorized"):
        replace(PoolSettings(), stratum=st).validate()
