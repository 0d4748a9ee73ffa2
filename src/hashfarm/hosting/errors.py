"""The hosting package's errors: one base under `HashfarmError`, a subclass per caller's choice."""

from __future__ import annotations

from hashfarm.errors import HashfarmError


class HostingError(HashfarmError):
    """A hosting or billing request that cannot be done; the message says why."""


class InputError(HostingError):
    """A CSV file (meter readings, power samples, ...) with malformed rows.

    `problems` holds one `(line_number, message)` per bad row (line 1 is the header); nothing
    from the file was used.
    """

    def __init__(self, what: str, problems: list[tuple[int, str]]) -> None:
        self.what = what
        self.problems = problems
        shown = "; ".join(f"line {n}: {msg}" for n, msg in problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(
            f"{what}: {len(problems)} malformed row(s), nothing imported: {shown}{more}"
        )


class StateError(HostingError):
    """An invoice state change the lifecycle does not allow, or a closed period recomputed."""
