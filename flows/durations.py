"""Durations (``3d``, ``4h30m``, ``2w``) and times relative to a customer field
(``90d before contract_end``), as written in touchpoints.yaml."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema

UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)\s*([wdhms])")
_WHOLE = re.compile(r"^\s*(\d+\s*[wdhms]\s*)+$")
DATE_FIELDS = ("contract_start", "contract_end")


def parse_duration(value: Any) -> timedelta:
    """``"3d"`` → 3 days. Units: w, d, h, m, s, combined as ``1d12h``."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str) or not _WHOLE.match(value):
        raise ValueError(f"{value!r} is not a duration; write a number and a unit, e.g. 30m, 4h, 3d, 2w")
    return timedelta(seconds=sum(int(n) * UNITS[u] for n, u in _PART.findall(value)))


def format_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds and seconds % UNITS["w"] == 0:
        return f"{seconds // UNITS['w']}w"
    out = []
    for unit in ("d", "h", "m", "s"):
        size = UNITS[unit]
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out) or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+\s*[wdhms]\s*)+$",
                    "description": "A duration such as 30m, 4h, 3d or 2w.", "examples": ["3d"]}),
]

_RELATIVE = re.compile(r"^\s*(?P<offset>(\d+\s*[wdhms]\s*)+)\s+(?P<dir>before|after)\s+(?P<field>[a-z_]+)\s*$")


class RelativeTime(BaseModel):
    """``90d before contract_end``: a time relative to a date field of the customer."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    offset: timedelta
    direction: Literal["before", "after"]
    field: str

    def __str__(self) -> str:
        return f"{format_duration(self.offset)} {self.direction} {self.field}"

    def resolve(self, customer_value: date | datetime, at: time, tz) -> datetime:
        """The moment this points at for a customer, at local time ``at`` in ``tz``."""
        day = customer_value.date() if isinstance(customer_value, datetime) else customer_value
        sign = -1 if self.direction == "before" else 1
        moment = datetime.combine(day, at, tzinfo=tz) + sign * self.offset
        return moment


def parse_relative(value: Any) -> RelativeTime:
    if isinstance(value, RelativeTime):
        return value
    if isinstance(value, dict):
        return RelativeTime(**value)
    m = _RELATIVE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"{value!r} is not a relative time; write e.g. '90d before contract_end'")
    if m["field"] not in DATE_FIELDS:
        raise ValueError(f"unknown customer date field {m['field']!r}; use one of {', '.join(DATE_FIELDS)}")
    return RelativeTime(offset=parse_duration(m["offset"]), direction=m["dir"], field=m["field"])


RelativeTimeField = Annotated[
    RelativeTime,
    BeforeValidator(parse_relative),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _RELATIVE.pattern,
                    "description": "A time relative to a customer date field.",
                    "examples": ["90d before contract_end"]}),
]
