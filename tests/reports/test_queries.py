"""The report's figures come out of SQL aggregates on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from flows.reports.queries import build
from flows.store import audit
from flows.store.tables import Delivery, Journey, Member, Survey, Task

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


def _fill(session) -> None:
    session.add_all([Journey(id="j1", touchpoint="install", entry_key="C-1", customer_id="C-1",
                             status="done", started_at=T0),
                     Journey(id="j2", touchpoint="install", entry_key="C-2", customer_id="C-2",
                             status="active", started_at=T0)])
    session.flush()
    session.add_all([Member(journey_id="j1", customer_id="C-1", status="done"),
                     Member(journey_id="j2", customer_id="C-2", status="exited",
                            reason="order cancelled")])
    for i, (status, reason) in enumerate([("sent", ""), ("sent", ""), ("bounced", "550"),
                                          ("suppressed", "unsubscribed")]):
        session.add(Delivery(key=f"d{i}", journey_id="j1", step_id="welcome", customer_id="C-1",
                             touchpoint="install", category="service", recipient="a@x",
                             message_id=f"m{i}", status=status, reason=reason, created_at=T0))
    for i, score in enumerate([10, 9, 3, None]):
        session.add(Survey(id=f"s{i}", key=f"s{i}", journey_id=f"j{1 + i % 2}",
                           touchpoint="install", step_id="nps", customer_id=f"C-{1 + i % 2}",
                           question="nps", text="?", expires_at=T0 + timedelta(days=9),
                           created_at=T0, score=score, comment="slow" if score == 3 else None,
                           answered_at=T0 + timedelta(hours=1) if score is not None else None))
    for i, (ack_h, done_h, level) in enumerate([(1, 5, 0), (30, None, 2), (3, 9, 0)]):
        session.add(Task(id=f"t{i}", key=f"t{i}", journey_id="j1", touchpoint="install",
                         customer_id="C-1", team="field", title="x", body="",
                         created_at=T0, due_at=T0 + timedelta(hours=24), escalation_level=level,
                         status="completed" if done_h else "acknowledged",
                         acknowledged_at=T0 + timedelta(hours=ack_h),
                         completed_at=T0 + timedelta(hours=done_h) if done_h else None))
    audit.record_many(session, [{
        "action": "journey.exited", "result": "goal", "actor": "system", "touchpoint": "install",
        "customer_id": "C-2", "at": T0, "reason": "goal reached: order.completed"}])


def test_the_report_counts_journeys_emails_surveys_and_team_slas(store):
    with store.session() as session:
        _fill(session)
    with store.read_session() as session:
        data = build(session)
    install = data["journeys"]["install"]
    assert install["started"] == 2 and install["goals"] == 1
    assert install["members"] == {"done": 1, "exited": 1}
    assert data["emails"]["install"]["welcome"] == {"sent": {"": 2}, "bounced": {"550": 1},
                                                    "suppressed": {"unsubscribed": 1}}
    nps = data["surveys"]["install"]["nps"]
    assert (nps["sent"], nps["answered"], nps["response_rate"], nps["nps"]) == (4, 3, 75.0, 33.3)
    assert [(d["customer_id"], d["score"], d["comment"], d["follow_up_done"])
            for d in data["detractors"]] == [("C-1", 3, "slow", True)]
    field = data["teams"]["field"]
    assert field["created"] == 3 and field["acknowledged_in_sla_pct"] == 66.7
    assert field["median_ack_hours"] == 3 and field["median_complete_hours"] == 7
    assert field["escalations"] == {"2": 1}
    json.dumps(data)


def test_since_and_touchpoint_narrow_the_report(store):
    with store.session() as session:
        _fill(session)
    with store.read_session() as session:
        assert build(session, since=T0 + timedelta(days=1))["journeys"] == {}
        assert build(session, touchpoint="renewal")["teams"] == {}


def test_a_survey_whose_email_never_went_out_is_not_counted_as_sent(store):
    with store.session() as session:
        session.add(Journey(id="j9", touchpoint="check-in", entry_key="x", status="done",
                            started_at=T0))
        for i, status in enumerate(["sent", "suppressed", "deferred", None]):
            session.add(Survey(id=f"q{i}", key=f"q{i}", journey_id="j9", touchpoint="check-in",
                               step_id="csat", customer_id=f"C-{i}", question="csat", text="?",
                               created_at=T0, expires_at=T0 + timedelta(days=9),
                               score=5 if i == 0 else None,
                               answered_at=T0 + timedelta(hours=1) if i == 0 else None))
            if status:
                session.add(Delivery(key=f"q{i}", journey_id="j9", step_id="csat",
                                     customer_id=f"C-{i}", touchpoint="check-in",
                                     category="surveys", recipient="a@x", message_id=f"q{i}",
                                     status=status, created_at=T0))
    with store.read_session() as session:
        csat = build(session)["surveys"]["check-in"]["csat"]
    assert (csat["sent"], csat["not_sent"], csat["answered"], csat["response_rate"]) == (
        2, 2, 1, 50.0)
