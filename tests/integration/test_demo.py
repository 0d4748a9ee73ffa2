"""`hashfarm demo` end to end: its own regtest node, the pool, two `hashfarm miner`
processes, a true summary read back from the node, and nothing left running afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.node

HASHFARM = Path(sys.executable).parent / "hashfarm"


def _miner_pids(text: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"^miner rig\d \(pid (\d+)\)", text, re.M)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")  # a zombie (exited, not yet reaped by init) is gone too
    return not stat.exists() or stat.read_text().split(") ", 1)[1][0] != "Z"


def test_the_demo_finds_blocks_that_pay_their_finders() -> None:
    done = subprocess.run(
        [str(HASHFARM), "demo", "--blocks", "4", "--hashrate", "1", "--seconds", "60"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},  # wide enough for the summary lines
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    summary = re.search(r"(\d+) of (\d+) blocks are in the node's chain and pay their finder", out)
    assert summary, out[-3000:]
    good, found = map(int, summary.groups())
    assert good == found >= 4
    # two real miner processes, each paying its own address, both measured by the pool
    # and by themselves (hashes counted under the 1 H/s cap)
    workers = re.findall(
        r"^  (rb1\w+)\.rig\d: (\d+) shares, (\d+) blocks paid to it, .* \(pool\), "
        r"([\d.]+) H/s \(miner: (\d+) hashes",
        out,
        re.M,
    )
    assert len({address for address, *_ in workers}) == 2, out[-3000:]
    for _, shares, _, measured, hashes in workers:
        assert int(shares) > 0
        assert int(hashes) > 0
        assert 0 < float(measured) < 2.5  # the cap held (uncapped: thousands of H/s)
    assert sum(int(blocks) for _, _, blocks, _, _ in workers) == found
    pids = _miner_pids(out)
    assert len(pids) == 2
    assert not any(_alive(pid) for pid in pids)
