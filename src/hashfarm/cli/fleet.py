"""`hashfarm fleet`: the farm manager's commands, one click group.

    hashfarm fleet simulate --count N [--models a,b] [--base-address 127.0.1.1]
                            [--pool stratum+tcp://HOST:PORT --user ADDRESS | --no-mining]
                            [--faults FILE]

Each subcommand lives in its own module and is added here (`fleet.add_command`), so a new
one (scan, status, watch) is one import and one line.
"""

from __future__ import annotations

import click

from hashfarm.cli.fleet_sim import simulate
from hashfarm.cli.fleet_watch import COMMANDS as WATCH_COMMANDS  # scan, status, watch


@click.group()
def fleet() -> None:
    """Mining machines: read them, watch them, simulate a farm of them."""


fleet.add_command(simulate)
for command in WATCH_COMMANDS:
    fleet.add_command(command)
