"""The weekly quality-of-service report as a Prefect markdown artifact.

``qos-weekly-report`` is deployed next to the touch points (flows/service/deployments.py) on
the cron schedule :data:`CRON`, Mondays 07:00 UTC. Each run writes the artifact
``qos-weekly-report``: the last :data:`DAYS` days' survey scores, team SLAs, outage notices and
detractors, and the NPS/CSAT of the last weeks, so the Prefect UI keeps one version a week.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import flow

from flows import clock

FLOW_NAME = "qos-weekly-report"
ARTIFACT_KEY = "qos-weekly-report"
CRON = "0 7 * * 1"
DAYS = 7
TREND_WEEKS = 6


def weekly_data(session, config, *, now: datetime, days: int = DAYS) -> dict[str, Any]:
    """The report of the last ``days`` days, with the trends of the last weeks."""
    from flows.reports import queries, trends

    data = queries.build(session, since=now - timedelta(days=days), config=config, now=now)
    data["trends"] = trends.build(session, now=now)
    return data


def trend_markdown(trends: dict[str, Any], weeks: int = TREND_WEEKS) -> str:
    shown = trends["weeks"][-weeks:]
    lines = ["## NPS and CSAT by week", "",
             "| score | touch point | " + " | ".join(shown) + " |",
             "| --- | --- | " + " | ".join("---" for _ in shown) + " |"]
    for question in ("nps", "csat"):
        for tp, series in sorted(trends[question].items()):
            cells = []
            for week in shown:
                figure = series.get(week)
                cells.append("-" if figure is None or figure["score"] is None
                             else f"{figure['score']} (n={figure['n']})")
            lines.append(f"| {question.upper()} | {tp} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def weekly_markdown(session, config, *, now: datetime, days: int = DAYS) -> str:
    from flows.reports.formats import to_markdown

    data = weekly_data(session, config, now=now, days=days)
    return (to_markdown(data, title=f"Quality of service: the {days} days to "
                                    f"{now.date().isoformat()}")
            + "\n" + trend_markdown(data["trends"]))


@flow(name=FLOW_NAME, description="The weekly quality-of-service report (markdown artifact "
                                  f"{ARTIFACT_KEY}): surveys, team SLAs, outage notices.")
def qos_weekly_report(days: int = DAYS) -> str:
    from prefect.artifacts import create_markdown_artifact

    from flows.engine.core import current_engine

    engine = current_engine()
    store = engine.store
    with getattr(store, "read_session", store.session)() as session:
        markdown = weekly_markdown(session, engine.config, now=clock.now(), days=days)
    create_markdown_artifact(markdown=markdown, key=ARTIFACT_KEY,
                             description=f"Quality of service, the last {days} days")
    return markdown


def deployment():
    """The RunnerDeployment served with the touch points: Mondays 07:00 UTC."""
    from prefect.types.entrypoint import EntrypointType

    return qos_weekly_report.to_deployment(
        name=FLOW_NAME, cron=CRON, tags=["report"], parameters={"days": DAYS},
        description="Writes the qos-weekly-report markdown artifact every Monday at 07:00 UTC.",
        entrypoint_type=EntrypointType.MODULE_PATH)
