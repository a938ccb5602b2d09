"""The qos-weekly-report flow writes its markdown artifact on a real Prefect server, and is
deployed with the touch points on Mondays at 07:00 UTC."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flows.reports import weekly
from tests.reports import sample
from tests.reports.test_outages import DECLARED


@pytest.fixture
def engine(settings, sqlite_store):
    from flows.engine.core import Engine, set_engine

    engine = Engine(settings, store=sqlite_store)
    set_engine(engine)
    yield engine
    set_engine(None)


def test_the_markdown_has_the_weeks_figures_and_the_trends(engine):
    with engine.store.session() as session:
        sample.fill(session)
    now = DECLARED + timedelta(days=3)
    with engine.store.read_session() as session:
        markdown = weekly.weekly_markdown(session, engine.config, now=now)
    assert markdown.startswith("# Quality of service: the 7 days to 2026-11-26")
    assert "| OUT-1 | 4 | 2.0 min | 10.0 min | 1.0 | 5.0 min | 7.0 min |" in markdown
    assert "| OUT-2 | 1 | - | - | - | - | - |" in markdown  # declared, nobody told yet
    trend = markdown.split("## NPS and CSAT by week")[1]
    assert "| 2026-W43 | 2026-W44 |" in trend and "| NPS | install |" in trend
    assert "## Team SLAs" in markdown and "| install |" in markdown


def test_the_flow_writes_the_qos_weekly_report_artifact(engine, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with engine.store.session() as session:
        sample.fill(session)
    markdown = weekly.qos_weekly_report(days=10_000)
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[weekly.ARTIFACT_KEY])),
            limit=1, sort="CREATED_DESC")
    assert artifact.type == "markdown" and artifact.data == markdown
    assert "| OUT-1 |" in artifact.data and "| NPS | install |" in artifact.data


def test_it_is_deployed_with_the_touch_points_on_mondays_at_seven(engine):
    from flows.service.deployments import build_deployments

    deployments = {d.name: d for d in build_deployments(engine)}
    report = deployments[weekly.FLOW_NAME]
    assert [s.schedule.cron for s in report.schedules] == ["0 7 * * 1"]
    assert report.entrypoint == "flows.reports.weekly.qos_weekly_report"
    assert set(deployments) == {weekly.FLOW_NAME} | {
        tp.name for tp in engine.config.touchpoints.values() if tp.enabled}
