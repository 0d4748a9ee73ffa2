"""hashfarm fleet: read every mining machine in a farm and know at once when one fails.

Layers inside the package: `sources/` speaks the machines' APIs and parses their replies
(sans-I/O) into the one normalised model (`model`); `hardware` completes a snapshot with what
a reply cannot carry (expected boards and fans, catalog nominal hashrate, derived power);
`faults` derives what is wrong, as a pure function. See docs/fleet.md.
"""

from hashfarm.fleet.faults import Fault, FaultKind, FaultThresholds, derive_faults
from hashfarm.fleet.hardware import enrich
from hashfarm.fleet.model import (
    Fan,
    Hashboard,
    Hashrates,
    MachineError,
    MachineSnapshot,
    MinerState,
    Pool,
    merge,
)

__all__ = [
    "Fan",
    "Fault",
    "FaultKind",
    "FaultThresholds",
    "Hashboard",
    "Hashrates",
    "MachineError",
    "MachineSnapshot",
    "MinerState",
    "Pool",
    "derive_faults",
    "enrich",
    "merge",
]
