"""The quality-of-service report for operators (/report): the figures of `touchpoints report`
as tables, and its charts as inline SVG (pygal, no script, no external asset).

Like /mail it is open while the app listens on loopback and needs an operator login
otherwise (flows/web/operator.py). ``?since=YYYY-MM-DD`` and ``?touchpoint=NAME`` narrow it
as the command's options do. The page's CSP is the site's, with the hashes of the charts'
``<style>`` elements added to style-src: nothing else inline runs or applies.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from flows.web.operator import gate
from flows.web.pages import CSP, engine_of, reading, render

router = APIRouter(include_in_schema=False)

DETRACTORS_SHOWN = 20
MAX_PARAM = 128


def page_csp(hashes: str) -> str:
    return CSP.replace("style-src 'self'", f"style-src 'self' {hashes}".rstrip())


def _since(value: str | None) -> tuple[datetime | None, str | None]:
    """(since, problem): a date, or what is wrong with the one given."""
    if not value:
        return None, None
    try:
        day = date.fromisoformat(value[:MAX_PARAM])
    except ValueError:
        return None, f"“{value[:40]}” is not a date: give it as YYYY-MM-DD, e.g. 2026-11-01."
    return datetime(day.year, day.month, day.day, tzinfo=UTC), None


def _build(engine, since, touchpoint) -> dict[str, Any]:
    from flows.reports.queries import build

    with reading(engine) as session:
        return build(session, since=since, touchpoint=touchpoint, config=engine.config)


@router.get("/report", response_class=HTMLResponse)
def report_page(request: Request, since: str | None = None,
                touchpoint: str | None = None) -> Response:
    if (login := gate(request)) is not None:
        return login
    from flows.reports.charts import all_charts, style_hashes
    from flows.reports.weekly_rows import rows

    engine = engine_of(request)
    names = sorted(engine.config.touchpoints)
    chosen, problem = _since(since)
    tp = touchpoint if touchpoint in names else None
    if touchpoint and tp is None:
        problem = f"There is no touch point “{touchpoint[:40]}”; showing all of them."
    data = _build(engine, chosen, tp)
    charts = all_charts(data)
    weeks, weekly = rows(data)
    context = {"data": data, "problem": problem, "names": names, "touchpoint": tp,
               "since": chosen.date().isoformat() if chosen else "",
               "charts": [{"title": c.title, "svg": Markup(c.svg)} for c in charts],
               "detractors": data["detractors"][:DETRACTORS_SHOWN],
               "weeks": weeks, "weekly": weekly,
               "kinds": {"outage": "Outages", "maintenance": "Planned maintenance"}}
    return render(request, "report.html", context, status=400 if problem and since and not chosen
                  else 200, csp=page_csp(style_hashes(charts)))
