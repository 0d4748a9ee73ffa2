"""`hashfarm fleet simulate` as an operator runs it: the real executable serves machines a
poller reads on their addresses, plays a fault script, and stops on SIGINT; wrong settings
are one clear line."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hashfarm.cli.main import cli
from hashfarm.fleet import derive_faults, enrich
from hashfarm.fleet.faults import FaultKind
from hashfarm.fleet.sources import BACKENDS
from hashfarm.fleet.sources.transport import poll_cgminer

HASHFARM = Path(sys.executable).parent / "hashfarm"
START_LIMIT = 30.0  # seconds for a busy machine to import and start the process


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --pool and --user, or --no-mining"),
        (["--no-mining", "--models", "s21"], "unknown s21"),
        (["--no-mining", "--base-address", "10.0.0.1"], "leave 127.0.0.0/8"),
        (["--pool", "http://x:1", "--user", "a"], "scheme must be stratum+tcp"),
    ],
)
def test_wrong_settings_are_one_clear_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["fleet", "simulate", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_fault_script_names_its_line(tmp_path: Path) -> None:
    script = tmp_path / "faults.txt"
    script.write_text("0 0 fan_stop\n5 0 melt\n")
    result = CliRunner().invoke(cli, ["fleet", "simulate", "--no-mining", "--faults", str(script)])
    assert result.exit_code == 2
    assert "fault script line 2" in result.output


async def test_the_executable_serves_plays_faults_and_stops_on_sigint(tmp_path: Path) -> None:
    base = f"127.{random.randint(2, 250)}.{random.randint(0, 255)}.1"
    script = tmp_path / "faults.txt"
    script.write_text("# a fan stops on the first machine\n0 0 fan_stop slot=2\n")
    process = await asyncio.create_subprocess_exec(
        str(HASHFARM), "fleet", "simulate", "--no-mining", "--count", "20",
        "--base-address", base, "--http-port", "0", "--models", "antminer-s19pro,avalon-1246",
        "--faults", str(script),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + START_LIMIT
        while not any("fan_stop" in line for line in lines):
            assert time.monotonic() < deadline, lines
            line = await asyncio.wait_for(process.stdout.readline(), START_LIMIT)
            assert line, lines
            lines.append(line.decode())
        assert lines[0].startswith(f"serving 20 machines {base} .. ")
        assert "antminer-s19pro x10, avalon-1246 x10" in lines[1]
        first = await poll_cgminer(
            BACKENDS["bmminer"], base, ["stats", "pools"], model="Antminer S19 Pro"
        )
        assert {f.kind for f in derive_faults(enrich(first))} == {FaultKind.DEAD_FAN}
        second = base.rsplit(".", 1)[0] + ".2"  # an Avalon, on the real port 4028
        avalon = await poll_cgminer(
            BACKENDS["avalon"], second, ["summary+pools+stats"], model="AvalonMiner 1246"
        )
        assert derive_faults(enrich(avalon)) == ()
        assert avalon.hashrate.live_hs == 90_000_000_000_000 * 99 // 100  # index 1: -1 %
        process.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(process.stdout.read(), 10)
        assert await process.wait() == 0
        assert rest.decode().strip().endswith("stopped")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
