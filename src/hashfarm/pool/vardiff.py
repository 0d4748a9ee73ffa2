"""Per-connection share difficulty (vardiff): pure, with the clock passed in.

A miner of hashrate H finds shares of difficulty d at a rate of H / (d * 2**32) per second, so
the difficulty that gives one share every T seconds is d * observed_rate * T. The controller
counts shares since its last change and retargets after `retarget_shares` shares or
`retarget_time` seconds, whichever comes first; a window without any share divides the
difficulty by `max_step`. Each step is bounded by `max_step` (one lucky burst cannot jump
the difficulty a thousandfold), and the result is clamped to
[max(pool floor, miner floor), min(maximum, network difficulty)], the ceiling winning: a
share harder than the network target would be a block anyway, so asking for more only hides
work. The pool floor is `VardiffSettings.floor(network)` (mainnet: 1).

`suggest_difficulty` and BIP 310 `minimum-difficulty` both raise the miner's floor (as
ckpool does): the miner asked never to be sent less than that. Neither can take it below
the pool floor or above `maximum`: a suggestion only moves the miner within those bounds.
"""

from __future__ import annotations

from hashfarm.pool.settings import VardiffSettings


def clamp(value: float, low: float, high: float) -> float:
    """`value` bounded to [low, high]; `high` wins when the bounds cross."""
    return min(max(value, low), high)


def retarget(
    current: float, shares: int, elapsed: float, settings: VardiffSettings
) -> float | None:
    """The new difficulty after `shares` shares in `elapsed` seconds, or None to keep it.

    Bounds (minimum, maximum, network) are applied by the caller; this is the control law.
    """
    if shares <= 0:
        return current / settings.max_step
    if elapsed <= 0.0:
        return current * settings.max_step
    factor = shares * settings.target_interval / elapsed
    if abs(factor - 1.0) <= settings.tolerance:
        return None
    factor = clamp(factor, 1.0 / settings.max_step, settings.max_step)
    return current * factor


class Vardiff:
    """The difficulty controller of one connection (mutable state, no I/O, no clock)."""

    __slots__ = ("_ceiling", "_floor", "_minimum", "_settings", "_shares", "_since", "difficulty")

    def __init__(
        self,
        settings: VardiffSettings,
        now: float,
        network_difficulty: float,
        network: str = "mainnet",
    ) -> None:
        self._settings = settings
        self._minimum = settings.floor(network)  # the pool's floor: no miner goes below it
        self._floor = self._minimum
        self._ceiling = min(settings.maximum, network_difficulty)
        self._shares = 0
        self._since = now
        self.difficulty = self._bound(settings.initial)

    def _bound(self, value: float) -> float:
        # the network ceiling beats a miner's floor: a harder share would be a block anyway
        return clamp(value, self._floor, self._ceiling)

    def _reset(self, now: float) -> None:
        self._shares = 0
        self._since = now

    def _change(self, value: float, now: float) -> float | None:
        """Adopt `value` (bounded) and restart the window; return it if it changed."""
        self._reset(now)
        new = self._bound(value)
        if new == self.difficulty:
            return None
        self.difficulty = new
        return new

    def on_share(self, now: float) -> float | None:
        """Count one accepted share; return the new difficulty when a retarget changes it."""
        self._shares += 1
        if self._shares < self._settings.retarget_shares:
            return self.tick(now)
        return self._retarget(now)

    def tick(self, now: float) -> float | None:
        """Called on time alone (no share): retarget once `retarget_time` has passed."""
        if now - self._since < self._settings.retarget_time:
            return None
        return self._retarget(now)

    def _retarget(self, now: float) -> float | None:
        if not self._settings.enabled:
            self._reset(now)
            return None
        proposed = retarget(self.difficulty, self._shares, now - self._since, self._settings)
        if proposed is None:
            self._reset(now)
            return None
        return self._change(proposed, now)

    def suggest(self, difficulty: float, now: float) -> float | None:
        """The miner's `mining.suggest_difficulty`: adopt it and never go below it."""
        return self.set_floor(difficulty, now, adopt=True)

    def set_floor(self, minimum: float, now: float, *, adopt: bool = False) -> float | None:
        """Raise the floor (BIP 310 minimum-difficulty); `adopt` also moves to it.

        The miner's value is held to [pool floor, maximum] first: it can never open the
        door to shares easier than the pool's floor.
        """
        self._floor = clamp(minimum, self._minimum, self._settings.maximum)
        target = self._floor if adopt else self.difficulty
        return self._change(target, now)

    def set_network_difficulty(self, network_difficulty: float, now: float) -> float | None:
        """A new template's difficulty: re-clamp the ceiling (regtest diff ~4.7e-10)."""
        self._ceiling = min(self._settings.maximum, network_difficulty)
        new = self._bound(self.difficulty)
        if new == self.difficulty:
            return None
        return self._change(new, now)
