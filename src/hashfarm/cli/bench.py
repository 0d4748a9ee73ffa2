"""`hashfarm bench --backend NAME [--threads N] [--seconds S] [--json]`: hashes per second.

Runs one hashing backend for a while after a warm-up and prints its rate in total and per
worker thread; `--json` prints one JSON object instead (backend, threads, seconds, hashes,
hashes_per_second, hashes_per_second_per_thread). Exit status 2 when the backend cannot run.
"""

from __future__ import annotations

import json

import click

from hashfarm.errors import ConfigError
from hashfarm.miner.backends import get_backend
from hashfarm.miner.backends.base import BACKENDS
from hashfarm.miner.backends.benchmark import HashrateSample, measure
from hashfarm.units import format_hashrate


def _report(sample: HashrateSample) -> dict[str, object]:
    return {
        "backend": sample.backend,
        "threads": sample.threads,
        "seconds": sample.seconds,
        "hashes": sample.hashes,
        "hashes_per_second": sample.hashes_per_second,
        "hashes_per_second_per_thread": sample.hashes_per_second_per_thread,
    }


@click.command()
@click.option(
    "--backend",
    type=click.Choice(list(BACKENDS)),
    default="numba",
    show_default=True,
    help="Hashing backend to measure.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Worker threads."
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    help="How long to hash after the warm-up.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(backend: str, threads: int, seconds: float, as_json: bool) -> None:
    """Measure the hashrate of a hashing backend on this machine."""
    try:
        hasher = get_backend(backend, threads)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        sample = measure(hasher, seconds, threads)
    finally:
        hasher.close()
    if as_json:
        click.echo(json.dumps(_report(sample)))
        return
    click.echo(
        f"{sample.backend}: {format_hashrate(sample.hashes_per_second)} with {threads} "
        f"thread(s), {format_hashrate(sample.hashes_per_second_per_thread)} per thread "
        f"({sample.hashes:,} hashes in {sample.seconds:.2f} s after warm-up)"
    )
