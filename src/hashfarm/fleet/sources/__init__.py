"""The only package that speaks the machines' APIs (docs/architecture: one owner per concern).

Sans-I/O parsers per firmware (`antminer`, `whatsminer`, `avalon`, `braiins`, `axeos`, with
the cgminer family's shared shapes in `cgminer`), the JSON repairs real firmwares need
(`repair`), and the declarative backend map (`backends`): reply bytes in, MachineSnapshot out.
"""

from hashfarm.fleet.sources.backends import BACKENDS, Backend, Capability, read
from hashfarm.fleet.sources.repair import REPAIRS, Decoded, decode_reply

__all__ = ["BACKENDS", "REPAIRS", "Backend", "Capability", "Decoded", "decode_reply", "read"]
