"""`hashfarm calc`: the payback calculator's command line.

`commands` holds the click group and its commands, `options` the shared options and the
economics inputs built from them, `render` the Output they print and how.
"""

from __future__ import annotations

from .commands import calc

__all__ = ["calc"]
