"""`hashfarm demo` end to end: its own regtest node, the pool, two miners, a true summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.node

HASHFARM = Path(sys.executable).parent / "hashfarm"


def test_the_demo_finds_blocks_that_pay_their_finders() -> None:
    done = subprocess.run(
        [str(HASHFARM), "demo", "--blocks", "4", "--pace", "0.2"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "160"},  # wide enough for the summary lines
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = re.search(r"(\d+) of (\d+) blocks are in the node's chain and pay their finder",
                        done.stdout)  # fmt: skip
    assert summary, done.stdout[-3000:]
    good, found = map(int, summary.groups())
    assert good == found >= 4
    # both miners took part, each with its own payout address
    workers = re.findall(r"^  (rb1\w+)\.rig\d: (\d+) shares, (\d+) blocks", done.stdout, re.M)
    assert len({address for address, _, _ in workers}) == 2
    assert all(int(shares) > 0 for _, shares, _ in workers)
