"""The report's weekly trends as rows (figure, name, one cell per week), the same rows for the
terminal, the /report page and the weekly Markdown artifact.

The figures come from :func:`flows.reports.trends.build` (one GROUP BY per figure) and from the
outage section's weekly notice histograms; nothing here reads the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.reports.formats import KIND_TITLES


@dataclass(frozen=True)
class WeeklyRow:
    figure: str
    name: str
    cells: list[Any]  # one per week, None where the week has no data


def _series(series: dict[str, dict], weeks: list[str], key: str) -> list[Any]:
    return [series.get(week, {}).get(key) for week in weeks]


def rows(data: dict[str, Any]) -> tuple[list[str], list[WeeklyRow]]:
    """(weeks, rows): every weekly figure of the report, touch points and teams sorted."""
    trends = data.get("trends") or {}
    weeks: list[str] = list(trends.get("weeks") or [])
    out: list[WeeklyRow] = []

    def add(figure: str, series_by_name: dict[str, dict], key: str) -> None:
        for name, series in sorted(series_by_name.items()):
            cells = _series(series, weeks, key)
            if any(cell is not None for cell in cells):
                out.append(WeeklyRow(figure, name, cells))

    add("Journeys started", trends.get("journeys", {}), "started")
    add("Goals reached", trends.get("journeys", {}), "goals")
    add("Exited", trends.get("journeys", {}), "exited")
    add("Emails sent", trends.get("emails", {}), "sent")
    add("Emails suppressed", trends.get("emails", {}), "suppressed")
    add("Survey response rate %", trends.get("responses", {}), "response_rate")
    add("NPS", trends.get("nps", {}), "score")
    add("CSAT %", trends.get("csat", {}), "score")
    add("Acknowledged in SLA %", trends.get("sla", {}), "acknowledged_in_sla_pct")
    add("Completed in SLA %", trends.get("sla", {}), "completed_in_sla_pct")
    for kind, section in sorted((data.get("outages") or {}).items()):
        weekly = section.get("weekly_notice") or {}
        title = KIND_TITLES.get(kind, kind)
        for key, label in (("p50_minutes", "p50"), ("p95_minutes", "p95")):
            cells = [weekly.get(week, {}).get(key) for week in weeks]
            if any(cell is not None for cell in cells):
                out.append(WeeklyRow(f"{title}: notice {label} (min)", "all", cells))
    return weeks, out
