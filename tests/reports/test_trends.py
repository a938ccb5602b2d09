"""Weekly trends group by ISO week (Monday to Sunday, UTC) on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from flows.reports import trends
from flows.reports.sql import week_label
from flows.store.tables import Delivery, Journey, Survey, Task

SUNDAY_LATE = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)  # the last minutes of 2026-W48
MONDAY_EARLY = datetime(2026, 11, 30, 0, 10, tzinfo=UTC)  # the first of 2026-W49
NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def _survey(i, question, score, at, touchpoint="install") -> Survey:
    return Survey(id=f"s{i}", key=f"s{i}", journey_id="j1", touchpoint=touchpoint, step_id="q",
                  customer_id="C-1", question=question, text="?", created_at=at - timedelta(days=1),
                  expires_at=at + timedelta(days=7), score=score, answered_at=at)


def _task(i, created, ack_after, due_after, team="field", done_after=None) -> Task:
    return Task(id=f"t{i}", key=f"t{i}", journey_id="j1", touchpoint="install", customer_id="C-1",
                team=team, title="x", body="", created_at=created, due_at=created + due_after,
                status="completed" if done_after else "acknowledged" if ack_after else "open",
                acknowledged_at=created + ack_after if ack_after else None,
                completed_at=created + done_after if done_after else None)


def _fill(session) -> None:
    session.add_all([Journey(id="j1", touchpoint="install", entry_key="C-1", customer_id="C-1",
                             started_at=SUNDAY_LATE),
                     Journey(id="j2", touchpoint="install", entry_key="C-2", customer_id="C-2",
                             started_at=MONDAY_EARLY),
                     Journey(id="j3", touchpoint="sale", entry_key="C-3", customer_id="C-3",
                             started_at=MONDAY_EARLY)])
    session.add(Delivery(key="d1", journey_id="j1", step_id="welcome", customer_id="C-1",
                         touchpoint="install", category="service", recipient="a@x",
                         message_id="m1", status="sent", created_at=SUNDAY_LATE))
    # W48: NPS 10, 10, 3 -> (2 - 1) / 3 = 33.3; W49: NPS 7 -> 0; CSAT 5, 2 -> 50
    for i, (question, score, at) in enumerate([("nps", 10, SUNDAY_LATE), ("nps", 10, SUNDAY_LATE),
                                               ("nps", 3, SUNDAY_LATE), ("nps", 7, MONDAY_EARLY),
                                               ("csat", 5, MONDAY_EARLY),
                                               ("csat", 2, MONDAY_EARLY)]):
        session.add(_survey(i, question, score, at))
    session.add(Survey(
        id="s9", key="s9", journey_id="j1", touchpoint="install", step_id="q", customer_id="C-1",
        question="nps", text="?", created_at=MONDAY_EARLY, expires_at=NOW))  # not answered
    hour, day = timedelta(hours=1), timedelta(days=1)
    session.add_all([_task(1, SUNDAY_LATE, hour, day, done_after=2 * hour),   # in SLA
                     _task(2, SUNDAY_LATE, 2 * day, day),                   # acknowledged late
                     _task(3, MONDAY_EARLY, None, 30 * day),                # open, not due yet
                     _task(4, MONDAY_EARLY, None, day)])                    # open and overdue


def test_figures_fall_in_the_iso_week_of_their_moment(store):
    with store.session() as session:
        _fill(session)
    with store.read_session() as session:
        data = trends.build(session, since=datetime(2026, 11, 23, tzinfo=UTC), now=NOW)
    assert data["weeks"] == ["2026-W48", "2026-W49"]
    assert data["journeys"]["install"] == {"2026-W48": {"started": 1, "goals": 0},
                                           "2026-W49": {"started": 1, "goals": 0}}
    assert data["emails"]["install"] == {"2026-W48": {"sent": 1}}
    assert data["nps"]["install"] == {"2026-W48": {"score": 33.3, "n": 3},
                                      "2026-W49": {"score": 0.0, "n": 1}}
    assert data["csat"]["install"] == {"2026-W49": {"score": 50.0, "n": 2}}
    field = data["sla"]["field"]
    assert field["2026-W48"] == {"created": 2, "due": 2, "acknowledged_in_sla_pct": 50.0,
                                 "completed_in_sla_pct": 50.0}
    assert field["2026-W49"] == {"created": 2, "due": 1, "acknowledged_in_sla_pct": 0.0,
                                 "completed_in_sla_pct": 0.0}
    json.dumps(data)


def test_since_and_touchpoint_narrow_the_trends(store):
    with store.session() as session:
        _fill(session)
    with store.read_session() as session:
        data = trends.build(session, since=MONDAY_EARLY, touchpoint="sale", now=NOW)
    assert data["weeks"] == ["2026-W49"]
    assert data["journeys"] == {"sale": {"2026-W49": {"started": 1, "goals": 0}}}
    assert data["nps"] == {} and data["sla"] == {}


def test_without_since_the_trends_cover_twelve_weeks():
    since = trends.default_since(NOW)
    assert since.weekday() == 0 and since.hour == 0
    assert len(trends.weeks_between(since, NOW)) == trends.WEEKS


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_every_day_of_a_week_has_the_label_of_its_monday(moment):
    monday = moment - timedelta(days=moment.weekday())
    assert week_label(moment) == week_label(monday) == week_label(monday.date().isoformat())


def test_survey_response_rates_and_exits_are_counted_week_by_week(store):
    from flows.store import audit

    with store.session() as session:
        _fill(session)
        audit.record_many(session, [
            {"action": "journey.exited", "result": "exited", "actor": "system",
             "touchpoint": "install", "customer_id": "C-2", "at": MONDAY_EARLY,
             "reason": "order cancelled"},
            {"action": "journey.goal", "result": "goal", "actor": "system",
             "touchpoint": "install", "customer_id": "C-1", "at": SUNDAY_LATE,
             "reason": "Installed"}])
    with store.read_session() as session:
        data = trends.build(session, since=datetime(2026, 11, 23, tzinfo=UTC), now=NOW)
    assert data["journeys"]["install"] == {"2026-W48": {"started": 1, "goals": 1},
                                           "2026-W49": {"started": 1, "goals": 0, "exited": 1}}
    # by the week the survey was made (a day before its answer: all in W48), s9 unanswered
    assert data["responses"]["install"] == {
        "2026-W48": {"sent": 6, "answered": 6, "response_rate": 100.0},
        "2026-W49": {"sent": 1, "answered": 0, "response_rate": 0.0}}


def test_every_weekly_figure_is_one_row_with_a_cell_per_week():
    from flows.reports.formats import to_markdown, to_text
    from flows.reports.weekly_rows import rows

    data = {"generated_at": NOW.isoformat(), "since": None, "journeys": {}, "emails": {},
            "surveys": {}, "detractors": [], "teams": {},
            "outages": {"outage": {"total": {"incidents": 0, "customers_notified": 0,
                                             "notice": {}, "resolution": {},
                                             "updates_sent": 0, "updates_per_customer": None},
                                   "incidents": [],
                                   "weekly_notice": {"2026-W49": {"n": 4, "p50_minutes": 2.0,
                                                                  "p95_minutes": 9.0}}}},
            "trends": {"weeks": ["2026-W48", "2026-W49"],
                       "journeys": {"install": {"2026-W48": {"started": 3, "goals": 1}}},
                       "emails": {}, "responses": {}, "csat": {},
                       "nps": {"install": {"2026-W49": {"score": 20.0, "n": 5}}},
                       "sla": {"field": {"2026-W48": {"acknowledged_in_sla_pct": 50.0,
                                                      "completed_in_sla_pct": None}}}}}
    weeks, found = rows(data)
    assert weeks == ["2026-W48", "2026-W49"]
    assert [(r.figure, r.name, r.cells) for r in found] == [
        ("Journeys started", "install", [3, None]),
        ("Goals reached", "install", [1, None]),
        ("NPS", "install", [None, 20.0]),
        ("Acknowledged in SLA %", "field", [50.0, None]),
        ("Outages: notice p50 (min)", "all", [None, 2.0]),
        ("Outages: notice p95 (min)", "all", [None, 9.0])]
    assert "  NPS · install: - 20.0" in to_text(data)
    assert "| NPS | install | - | 20.0 |" in to_markdown(data, title="QoS")
