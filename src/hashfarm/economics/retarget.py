"""Difficulty analytics: the next retarget from the current epoch's progress, and the arms race.

The rule itself is Bitcoin Core's `CalculateNextWorkRequired`, implemented once in
`hashfarm.chain.pow.next_work_required`; this module asks "what if": where is the current
epoch heading, and what happens to difficulty, block times and revenue per TH when the
network's hashrate follows a given path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hashfarm.chain.networks import Network
from hashfarm.chain.pow import bits_to_difficulty, block_work, next_work_required
from hashfarm.chain.subsidy import block_subsidy
from hashfarm.economics.hashprice import SECONDS_PER_DAY, btc_per_th_day
from hashfarm.errors import ConfigError
from hashfarm.units import HASHES_PER_DIFF1, SATS_PER_BTC

__all__ = ["ArmsRaceEpoch", "RetargetProjection", "arms_race", "project_retarget"]


@dataclass(frozen=True, slots=True)
class RetargetProjection:
    """Where the current epoch is heading if blocks keep coming at the pace seen so far."""

    height: int  # tip height
    epoch_start_height: int
    blocks_done: int  # blocks of this epoch after its first (intervals measured)
    blocks_left: int  # until the retarget height
    retarget_height: int
    mean_interval_s: float  # observed in this epoch
    current_bits: int
    current_difficulty: float
    projected_bits: int
    projected_difficulty: float
    change: float  # projected_difficulty / current_difficulty - 1
    seconds_to_retarget: float  # at the observed pace
    retarget_time: float  # unix time at the observed pace
    implied_hashrate_hs: float  # hashrate that produced the observed pace


def project_retarget(
    height: int, bits: int, epoch_start_time: int, tip_time: int, network: Network
) -> RetargetProjection:
    """Project the next retarget from the tip (`height`, `tip_time`) and the epoch's first block.

    Core measures an epoch from its first to its last block (2015 intervals), so the
    projected timespan is the observed mean interval times `retarget_interval - 1`.
    """
    interval = network.retarget_interval
    start = height - height % interval
    done = height - start
    if done < 1:
        raise ConfigError(f"height {height} is an epoch's first block: nothing measured yet")
    if tip_time <= epoch_start_time:
        raise ConfigError("tip time must be after the epoch's first block time")
    mean = (tip_time - epoch_start_time) / done
    projected_span = round(mean * (interval - 1))
    new_bits = next_work_required(bits, epoch_start_time, epoch_start_time + projected_span,
                                  network)  # fmt: skip
    left = start + interval - height
    current = bits_to_difficulty(bits)
    projected = bits_to_difficulty(new_bits)
    return RetargetProjection(
        height=height,
        epoch_start_height=start,
        blocks_done=done,
        blocks_left=left,
        retarget_height=start + interval,
        mean_interval_s=mean,
        current_bits=bits,
        current_difficulty=current,
        projected_bits=new_bits,
        projected_difficulty=projected,
        change=projected / current - 1,
        seconds_to_retarget=left * mean,
        retarget_time=tip_time + left * mean,
        implied_hashrate_hs=current * HASHES_PER_DIFF1 / mean,
    )


@dataclass(frozen=True, slots=True)
class ArmsRaceEpoch:
    """One epoch of an arms-race simulation."""

    epoch: int
    start_day: float
    duration_days: float
    bits: int
    difficulty: float
    mean_hashrate_hs: float
    mean_interval_s: float
    btc_per_th_day: float  # revenue rate at this epoch's difficulty (subsidy + fees)


def _mine_epoch(
    hashrate_hs: Sequence[float], day: int, clock: float, work_per_block: float, blocks: int
) -> tuple[int, float, float, float]:
    """Follow the daily hashrate path from `clock` (s) until `blocks` are expected.

    Returns (day, clock, hashes done, blocks still missing when the path ran out).
    """
    need, hashes = float(blocks), 0.0
    while need > 0 and day < len(hashrate_hs):
        day_end = (day + 1) * SECONDS_PER_DAY
        blocks_left_today = (day_end - clock) * hashrate_hs[day] / work_per_block
        step = min(need, blocks_left_today)
        clock += step * work_per_block / hashrate_hs[day]
        hashes += step * work_per_block
        need -= step
        if need > 0:
            day += 1
    return day, clock, hashes, need


def arms_race(
    hashrate_hs: Sequence[float],
    start_height: int,
    bits: int,
    network: Network,
    fees_btc: float = 0.0,
) -> list[ArmsRaceEpoch]:
    """Difficulty and block times when the network hashrate follows `hashrate_hs` (one per day).

    Starts at a retarget boundary (`start_height` is rounded down to one). Within a day the
    hashrate is constant; each epoch ends when 2016 blocks are expected, its timespan is
    measured as Core does (first to last block: 2015 of 2016 intervals, whole seconds), and
    the next bits come from the exact retarget rule. Stops when the path runs out.
    """
    if not hashrate_hs or min(hashrate_hs) <= 0:
        raise ConfigError("hashrate path: give at least one positive value per day")
    if network.no_retargeting:
        raise ConfigError(f"{network.name} never retargets: there is no arms race to simulate")
    height = start_height - start_height % network.retarget_interval
    epochs: list[ArmsRaceEpoch] = []
    day, clock = 0, 0.0  # day index into the path; seconds elapsed since the start
    while day < len(hashrate_hs):
        difficulty = bits_to_difficulty(bits)
        work_per_block = float(block_work(bits))  # expected hashes per block, exact
        start = clock
        day, clock, hashes, need = _mine_epoch(
            hashrate_hs, day, clock, work_per_block, network.retarget_interval
        )
        network_blocks = network.retarget_interval - need  # < 2016: the path ended early
        duration = clock - start
        reward = block_subsidy(height, network) / SATS_PER_BTC + fees_btc
        epochs.append(
            ArmsRaceEpoch(
                epoch=len(epochs),
                start_day=start / SECONDS_PER_DAY,
                duration_days=duration / SECONDS_PER_DAY,
                bits=bits,
                difficulty=difficulty,
                mean_hashrate_hs=hashes / duration if duration > 0 else math.nan,
                mean_interval_s=duration / network_blocks if network_blocks else math.nan,
                btc_per_th_day=btc_per_th_day(difficulty, reward),
            )
        )
        if need > 0:
            break
        span = round(duration * (network.retarget_interval - 1) / network.retarget_interval)
        bits = next_work_required(bits, 0, span, network)
        height += network.retarget_interval
    return epochs
