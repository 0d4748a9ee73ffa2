"""`hashfarm fleet simulate`: serve N simulated machines on loopback until Ctrl-C.

Machine i listens at `--base-address` + i (skipping .0 and .255) on TCP 4028 (cgminer
family) or HTTP `--http-port` (AxeOS; 80 needs root). With `--pool` and `--user` each
machine mines for real through that pool with hashfarm's own Stratum client, throttled to
`--real-hashrate` H/s, and reports what it really did scaled up to its model's size
(`scale = nominal / real-hashrate`, printed at start). `--no-mining` serves the APIs only
(cheap: thousands of machines). `--faults FILE` plays a fault script (see
fleet.simulate.parse_fault_script).

`StratumHashSource` is the wiring between the two sibling packages (fleet never imports
miner): hashfarm.miner's StratumMiner behind fleet.simulate's HashSource interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from hashfarm.errors import ConfigError
from hashfarm.fleet.sim_state import PROFILES, Hashing
from hashfarm.fleet.simulate import (
    CGMINER_PORT,
    HTTP_PORT,
    ScriptStep,
    SimulatedFarm,
    SimulatedMachine,
    parse_fault_script,
)
from hashfarm.miner.client import StratumMiner
from hashfarm.miner.display import Reporter
from hashfarm.miner.settings import MinerSettings, PoolURL
from hashfarm.miner.stats import LONG_WINDOW, SHORT_WINDOW, MinerStats

__all__ = ["StratumHashSource", "simulate", "stratum_sources"]

DEFAULT_REAL_HASHRATE = 20.0  # H/s per machine: on regtest nearly every hash is a share


class _Discard(io.StringIO):
    """A sink for the miner's event lines (a farm has no terminal per machine)."""

    def write(self, text: str) -> int:
        return len(text)


class StratumHashSource:
    """hashfarm.miner's Stratum client, one thread, capped at `rate_hs`, as a HashSource.

    Windows: 5 s and 1 min are the miner's own meters; the miner keeps 1 min of samples, so
    the 15 min window reads the 1 min rate. `idle_after_block` is off: on regtest nearly every
    share is a block, and a machine idling after each would report a fraction of its rate."""

    def __init__(
        self, url: PoolURL, user: str, rate_hs: float = DEFAULT_REAL_HASHRATE, **settings: Any
    ) -> None:
        self.full_rate_hs = rate_hs
        self.settings = MinerSettings(
            user=user,
            backend="hashlib",
            threads=1,
            executor="thread",
            max_hashrate=rate_hs,
            idle_after_block=False,
            output="quiet",
            **settings,
        ).validate()
        self.stats = MinerStats("hashlib", 1, time.monotonic())
        reporter = Reporter(self.stats, "quiet", stream=_Discard())
        self.miner = StratumMiner(self.settings, url, self.stats, reporter)

    def hashing(self) -> Hashing:
        """The miner's real figures now (H/s, unscaled)."""
        now, s = time.monotonic(), self.stats
        total = sum(m.total for m in s.meters)
        one_min = s.hashrate(LONG_WINDOW, now)
        return Hashing(
            five_sec_hs=s.hashrate(SHORT_WINDOW, now),
            one_min_hs=one_min,
            fifteen_min_hs=one_min,
            average_hs=total / max(now - s.started, 1e-9),
            accepted=s.accepted,
            rejected=sum(s.rejected.values()),
            connected=s.connected,
        )

    def throttle(self, fraction: float) -> None:
        """Hash at `fraction` of the cap from the next chunk on."""
        cap = self.full_rate_hs * max(fraction, 1e-3)  # 0 would divide by zero in the engine
        self.miner.engine.settings = replace(self.settings, max_hashrate=cap)

    async def run(self) -> None:
        """Mine until cancelled."""
        await self.miner.run()


def stratum_sources(
    url: PoolURL, rate_hs: float = DEFAULT_REAL_HASHRATE
) -> Callable[[SimulatedMachine], StratumHashSource]:
    """A farm's `hash_sources`: each machine mines as its own pool user (USER + index)."""

    def make(machine: SimulatedMachine) -> StratumHashSource:
        return StratumHashSource(url, machine.state.pool_user, rate_hs)

    return make


def _profiles(models: str | None) -> list[str] | None:
    if not models:
        return None
    return [m.strip() for m in models.split(",") if m.strip()]


def _check_script(farm: SimulatedFarm, steps: list[ScriptStep]) -> None:
    for step in steps:
        farm.targets(step.target)  # raises ConfigError naming an unknown machine


def _describe(farm: SimulatedFarm) -> str:
    machines = farm.machines
    kinds = Counter(m.profile.name for m in machines)
    ports = sorted({f"{m.profile.transport} {m.port}" for m in machines})
    lines = [
        f"serving {len(machines)} machines {machines[0].address} .. {machines[-1].address} "
        f"({', '.join(ports)})",
        "models: " + ", ".join(f"{name} x{n}" for name, n in kinds.items()),
    ]
    scaled = {m.profile.name: m.scale for m in machines if m.scale}
    for name, scale in scaled.items():
        lines.append(f"  {name}: reports {scale:.3g} x the H/s it really hashes")
    return "\n".join(lines)


async def _serve(farm: SimulatedFarm, steps: list[ScriptStep], duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with farm:
        _check_script(farm, steps)
        click.echo(_describe(farm))

        def announce(step: ScriptStep) -> None:
            what = f"clear {step.fault or 'all'}" if step.clear else str(step.fault)
            slot = "" if step.slot is None else f" slot {step.slot}"
            click.echo(f"{time.strftime('%H:%M:%S')} machine {step.target}: {what}{slot}")

        script = asyncio.create_task(farm.run_script(steps, announce))
        try:
            if duration is None:
                await stop.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
        finally:
            script.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await script
    click.echo("stopped")


@click.command()
@click.option("--count", "-n", default=10, show_default=True, type=click.IntRange(1, 60_000))
@click.option(
    "--models",
    help=f"Comma-separated profiles, cycled (default: all): {', '.join(PROFILES)}.",
)
@click.option("--base-address", default="127.0.1.1", show_default=True, help="First machine.")
@click.option(
    "--port",
    "cgminer_port",
    default=CGMINER_PORT,
    show_default=True,
    type=int,
    help="TCP API port of the cgminer family (0: one ephemeral port each).",
)
@click.option(
    "--http-port",
    default=HTTP_PORT,
    show_default=True,
    type=int,
    help="AxeOS HTTP port (80 needs root; e.g. 8080).",
)
@click.option("--pool", "pool_url", help="Mine through this pool: stratum+tcp://HOST:PORT.")
@click.option("--user", help="Pool user ADDRESS[.WORKER]; machine i adds its index.")
@click.option("--no-mining", is_flag=True, help="Serve the APIs only (nominal hashrates).")
@click.option(
    "--real-hashrate",
    default=DEFAULT_REAL_HASHRATE,
    show_default=True,
    type=click.FloatRange(0.1),
    help="H/s each machine really hashes.",
)
@click.option(
    "--uptime",
    default=86_400,
    show_default=True,
    type=click.IntRange(0),
    help="Simulated uptime at start, seconds.",
)
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Fault script: 'AT MACHINE FAULT [slot=N]' or 'AT MACHINE clear [FAULT]' per line.",
)
@click.option("--duration", type=click.FloatRange(0), help="Stop after this many seconds.")
def simulate(**opts: Any) -> None:
    """Serve simulated mining machines on loopback, mining for real through a pool."""
    try:
        steps = parse_fault_script(opts["faults_file"].read_text()) if opts["faults_file"] else []
        sources = None
        if not opts["no_mining"]:
            if not opts["pool_url"] or not opts["user"]:
                raise ConfigError("fleet.simulate: give --pool and --user, or --no-mining")
            sources = stratum_sources(PoolURL.parse(opts["pool_url"]), opts["real_hashrate"])
        farm = SimulatedFarm(
            opts["count"],
            models=_profiles(opts["models"]),
            base_address=opts["base_address"],
            cgminer_port=opts["cgminer_port"],
            http_port=opts["http_port"],
            hash_sources=sources,
            uptime_s=opts["uptime"],
            pool_url=opts["pool_url"] or "stratum+tcp://127.0.0.1:3333",
            pool_user=opts["user"] or "hashfarm.sim",
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        asyncio.run(_serve(farm, steps, opts["duration"]))
    except ConfigError as exc:  # a port in use, port 80 without root, an unknown machine
        raise click.ClickException(str(exc)) from exc
