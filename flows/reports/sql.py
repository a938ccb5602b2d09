"""Dialect-aware SQL pieces of the report: seconds between two timestamps, the ISO week a
timestamp falls in, and percentiles read from a GROUP BY histogram.

Both constructs compile to plain SQL on SQLite (``julianday``, ``date(..., 'weekday 0',
'-6 days')``) and PostgreSQL (``EXTRACT(EPOCH ...)``, ``date_trunc('week', ...)``), and accept a
timestamp column or an ISO 8601 text (a JSON field such as a journey's trigger time).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import BigInteger, Date
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class seconds_between(FunctionElement):
    """Whole seconds from the first timestamp to the second (rounded)."""

    type = BigInteger()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element, compiler, **kw):
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(ROUND((julianday({end}) - julianday({start})) * 86400.0) AS INTEGER)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element, compiler, **kw):
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return (f"CAST(ROUND(EXTRACT(EPOCH FROM (CAST({end} AS TIMESTAMP WITH TIME ZONE) - "
            f"CAST({start} AS TIMESTAMP WITH TIME ZONE)))) AS BIGINT)")


class week_start(FunctionElement):
    """The Monday (UTC) of the ISO week a timestamp falls in."""

    type = Date()
    inherit_cache = True
    name = "week_start"


@compiles(week_start, "sqlite")
def _week_sqlite(element, compiler, **kw):
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"date({value}, 'weekday 0', '-6 days')"


@compiles(week_start, "postgresql")
def _week_postgresql(element, compiler, **kw):
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(date_trunc('week', {value} AT TIME ZONE 'UTC') AS DATE)"


def week_label(value: date | datetime | str) -> str:
    """'2026-W45' for any day of that ISO week (SQLite hands the date back as text)."""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    year, week, _ = value.isocalendar()
    return f"{year}-W{week:02d}"


def percentile(histogram: Counter, share: float) -> int | None:
    """Nearest-rank percentile of a {value: count} histogram: the smallest value with at least
    ``share`` of all observations at or below it. None when there are none."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(share * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)  # unreachable: the ranks add up to total


def median(histogram: Counter) -> float | None:
    """The median of a {value: count} histogram (the mean of the middle two for an even n)."""
    total = sum(histogram.values())
    if not total:
        return None
    wanted = [(total + 1) // 2, total // 2 + 1] if total % 2 == 0 else [(total + 1) // 2]
    found, seen = [], 0
    for value in sorted(histogram):
        seen += histogram[value]
        while wanted and seen >= wanted[0]:
            found.append(value)
            wanted.pop(0)
    return sum(found) / len(found)


def latency(histogram: Counter) -> dict[str, float | int | None]:
    """{n, p50_minutes, p95_minutes} of a histogram of seconds."""
    def minutes(seconds: int | None) -> float | None:
        return None if seconds is None else round(seconds / 60, 1)

    return {"n": sum(histogram.values()), "p50_minutes": minutes(percentile(histogram, 0.5)),
            "p95_minutes": minutes(percentile(histogram, 0.95))}


def merged(histograms: Iterable[Counter]) -> Counter:
    total: Counter = Counter()
    for histogram in histograms:
        total.update(histogram)
    return total
