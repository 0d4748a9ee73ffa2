"""Which IPs may talk Stratum: counters of misbehaviour per IP, and the bans they lead to.

Pure: every method takes `now` (UNIX seconds) and nothing here touches a socket or a
clock, so the rules are tested without waiting. The Stratum server reports what it sees
(`junk`, `failed_authorize`, `shares`), refuses a banned IP at accept (`banned`) and is
told of every new ban, automatic or manual, through `on_ban` so that it can close the IP's
open connections. The API lists (`active`) and lifts (`lift`) bans.

Rules (all in `BanSettings`): more than `junk_lines` junk lines (undecodable JSON, oversize
lines, methods not allowed before authorize) or more than `failed_authorizations` refused
authorizations in `window` seconds; or, over `share_window` seconds, at least
`invalid_min_shares` judged shares of which more than `invalid_ratio` were rejected. Memory
is bounded: at most `max_tracked_ips` IPs hold counters and as many hold bans; expired
entries go in `purge`, and when full the oldest entry makes room.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from hashfarm.pool.settings import BanSettings

JUNK_LINES = "junk-lines"
INVALID_SHARES = "invalid-shares"
FAILED_AUTHORIZE = "failed-authorize"
MANUAL = "manual"
REASONS = (JUNK_LINES, INVALID_SHARES, FAILED_AUTHORIZE, MANUAL)


@dataclass(frozen=True, slots=True)
class Ban:
    """One banned IP: why, and from when until when (UNIX seconds)."""

    ip: str
    reason: str  # one of REASONS
    since: float
    until: float


class _Counts:
    """What one IP did in its current windows (fixed windows: cheap, and good enough)."""

    __slots__ = ("accepted", "failed_auth", "junk", "rejected", "share_start", "start")

    def __init__(self, now: float) -> None:
        self.start = now  # start of the junk/authorize window
        self.junk = 0
        self.failed_auth = 0
        self.share_start = now  # start of the share window
        self.accepted = 0
        self.rejected = 0


class BanList:
    """Per-IP misbehaviour counters and the bans they produce (see the module docstring)."""

    def __init__(self, settings: BanSettings) -> None:
        self.settings = settings
        self._bans: dict[str, Ban] = {}
        self._counts: dict[str, _Counts] = {}
        self.on_ban: Callable[[Ban], None] | None = None  # set by the server: close the IP

    # -- the API's view ------------------------------------------------------------------

    def active(self, now: float) -> list[Ban]:
        """Bans in force at `now`, soonest to expire first."""
        return sorted((b for b in self._bans.values() if b.until > now), key=lambda b: b.until)

    def banned(self, ip: str, now: float) -> Ban | None:
        """The ban in force on `ip`, if any."""
        ban = self._bans.get(ip)
        return ban if ban is not None and ban.until > now else None

    def lift(self, ip: str) -> bool:
        """Remove `ip`'s ban and forget its counters; False when it was not banned."""
        self._counts.pop(ip, None)
        return self._bans.pop(ip, None) is not None

    def ban(self, ip: str, reason: str, now: float, seconds: float | None = None) -> Ban:
        """Ban `ip` for `seconds` (default: the setting) from `now`; the server is told."""
        if reason not in REASONS:
            raise ValueError(f"unknown ban reason {reason!r} (one of {', '.join(REASONS)})")
        length = self.settings.seconds if seconds is None else seconds
        if not length > 0.0:
            raise ValueError(f"a ban lasts a positive number of seconds, not {seconds!r}")
        self._bans.pop(ip, None)  # re-insert: the dict's order is the eviction order
        if len(self._bans) >= self.settings.max_tracked_ips:
            self._make_room(self._bans, now)
        ban = self._bans[ip] = Ban(ip, reason, now, now + length)
        self._counts.pop(ip, None)
        if self.on_ban is not None:
            self.on_ban(ban)
        return ban

    # -- what the server reports ---------------------------------------------------------

    def exempt(self, ip: str) -> bool:
        """Loopback when `exempt_loopback` is set: never counted, banned or capped."""
        if not self.settings.exempt_loopback:
            return False
        try:
            return ipaddress.ip_address(ip).is_loopback
        except ValueError:  # not an IP (a Unix socket's name): not ours to judge
            return True

    def junk(self, ip: str, now: float, count: int = 1) -> Ban | None:
        """`count` junk lines from `ip`; the new ban when they cross the limit."""
        c = self._window(ip, now)
        if c is None:
            return None
        c.junk += count
        if c.junk > self.settings.junk_lines:
            return self.ban(ip, JUNK_LINES, now)
        return None

    def failed_authorize(self, ip: str, now: float, count: int = 1) -> Ban | None:
        """`count` refused authorizations from `ip`; the new ban when they cross the limit."""
        c = self._window(ip, now)
        if c is None:
            return None
        c.failed_auth += count
        if c.failed_auth > self.settings.failed_authorizations:
            return self.ban(ip, FAILED_AUTHORIZE, now)
        return None

    def shares(self, ip: str, accepted: int, rejected: int, now: float) -> Ban | None:
        """Judged shares from `ip`; the new ban when the invalid ratio crosses the limit."""
        c = self._window(ip, now)
        if c is None:
            return None
        st = self.settings
        if now - c.share_start > st.share_window:
            c.share_start, c.accepted, c.rejected = now, 0, 0
        c.accepted += accepted
        c.rejected += rejected
        total = c.accepted + c.rejected
        if total >= st.invalid_min_shares and c.rejected > st.invalid_ratio * total:
            return self.ban(ip, INVALID_SHARES, now)
        return None

    def purge(self, now: float) -> None:
        """Forget expired bans and counters whose windows have all ended (the sweep)."""
        for ip in [ip for ip, b in self._bans.items() if b.until <= now]:
            del self._bans[ip]
        st = self.settings
        stale = [
            ip
            for ip, c in self._counts.items()
            if now - c.start > st.window and now - c.share_start > st.share_window
        ]
        for ip in stale:
            del self._counts[ip]

    @property
    def tracked(self) -> int:
        """IPs holding counters or bans (bounded by 2 * max_tracked_ips)."""
        return len(self._counts) + len(self._bans)

    # -- internals -----------------------------------------------------------------------

    def _window(self, ip: str, now: float) -> _Counts | None:
        """`ip`'s counters, the junk/authorize window restarted when it has ended."""
        if not self.settings.enabled or self.exempt(ip):
            return None
        c = self._counts.get(ip)
        if c is None:
            if len(self._counts) >= self.settings.max_tracked_ips:
                self._make_room(self._counts, now)
            c = self._counts[ip] = _Counts(now)
        elif now - c.start > self.settings.window:
            c.start, c.junk, c.failed_auth = now, 0, 0
        return c

    def _make_room(self, table: dict[str, _Counts] | dict[str, Ban], now: float) -> None:
        """Purge; if still full, drop the oldest entry (an attacker spreading over more IPs
        than we track loses counts, never makes us grow)."""
        self.purge(now)
        while len(table) >= self.settings.max_tracked_ips:
            del table[next(iter(table))]
