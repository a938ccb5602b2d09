"""The engine's clock. Everything asks here for "now" (aware UTC), so tests can move time.

``TOUCHPOINTS_CLOCK="<anchor ISO time>*<speed>"`` makes engine time run ``speed`` times faster
than wall time from ``anchor`` on (the demo's ``--speed``). Durable waits still go through the
same continuations and scheduled Prefect runs; :func:`to_wall` maps an engine time back to the
wall-clock moment a run must be scheduled for.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

ENV = "TOUCHPOINTS_CLOCK"


def _dilation() -> tuple[datetime, float] | None:
    raw = os.environ.get(ENV)
    if not raw:
        return None
    anchor, _, speed = raw.partition("*")
    return datetime.fromisoformat(anchor), float(speed or 1)


def now() -> datetime:
    real = datetime.now(UTC)
    dilation = _dilation()
    if dilation is None:
        return real
    anchor, speed = dilation
    return anchor + (real - anchor) * speed


def to_wall(moment: datetime) -> datetime:
    """The wall-clock time at which engine time reaches ``moment``."""
    dilation = _dilation()
    if dilation is None:
        return moment
    anchor, speed = dilation
    return anchor + (moment - anchor) / speed


def from_wall(moment: datetime) -> datetime:
    """The engine time when the wall clock shows ``moment`` (the inverse of :func:`to_wall`)."""
    dilation = _dilation()
    if dilation is None:
        return moment
    anchor, speed = dilation
    return anchor + (moment - anchor) * speed


def dilate(speed: float, anchor: datetime | None = None) -> str:
    """The TOUCHPOINTS_CLOCK value for running ``speed`` times faster from now."""
    anchor = anchor or datetime.now(UTC)
    return f"{anchor.isoformat()}*{speed}"
