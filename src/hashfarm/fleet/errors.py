"""The fleet's exceptions, under the project's one tree (`hashfarm.errors.HashfarmError`).

    HashfarmError
    └── FleetError            talking to a mining machine or reading its reply
        ├── ReplyError        bytes that are not a reply we can read (garbage, bad JSON after
        │                     every documented repair, a shape the parser does not know)
        ├── CommandError      the machine answered with an error status (E/F, Access denied)
        └── MachineUnreachable  connect refused, timed out, reset, or a reply over the size cap
                              (transient: the poller retries with backoff)

Parsers raise ReplyError/CommandError with the command and the reason in the message; they
never turn a bad reply into None. A field a firmware does not report is None; a field it
reports in a form we cannot read is an error.
"""

from __future__ import annotations

from hashfarm.errors import HashfarmError

__all__ = ["CommandError", "FleetError", "MachineUnreachable", "ReplyError"]


class FleetError(HashfarmError):
    """Any failure talking to a mining machine or reading what it sent."""


class ReplyError(FleetError):
    """A reply that cannot be read: not JSON after the documented repairs, or a wrong shape."""


class CommandError(FleetError):
    """The machine refused or failed a command (STATUS E/F, a non-zero v3 `code`)."""

    def __init__(self, command: str, code: object, message: str) -> None:
        super().__init__(f"{command}: the machine answered with an error [{code}] {message}")
        self.command = command
        self.code = code
        self.message = message


class MachineUnreachable(FleetError):
    """No usable reply: refused, timed out, reset, or over the reply size cap (transient)."""
