"""The outage figures of real journeys: the shipped outage and outage-update touch points run
through the dispatcher and Prefect, mail to a real SMTP server, then the report reads the
store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from flows.reports.queries import build
from flows.store.tables import Delivery
from tests.engine.conftest import clock, emit, engine  # noqa: F401 - the e2e fixtures

pytestmark = pytest.mark.e2e


def test_declared_five_minutes_before_intake_and_resolved_three_before(
        engine, emit, clock):  # noqa: F811
    examples = {n: dict(s.example or {}) for n, s in engine.config.event_types().items()}
    send = emit.dispatcher.emit
    send(type="outage.declared", data=examples["outage.declared"], source="test", actor="test",
         occurred_at=clock() - timedelta(minutes=5))
    clock.advance(hours=2)
    send(type="outage.updated", data=examples["outage.updated"], source="test", actor="test")
    clock.advance(hours=2)
    send(type="outage.resolved", data=examples["outage.resolved"], source="test", actor="test",
         occurred_at=clock() - timedelta(minutes=3))

    with engine.store.read_session() as session:
        told = session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.step_id == "outage_acknowledged", Delivery.status == "sent"))
        data = build(session, config=engine.config, now=clock())
    [outage] = data["outages"]["outage"]["incidents"]
    assert told > 1 and outage["id"] == examples["outage.declared"]["outage_id"]
    assert outage["notified"] == told == outage["customers"]
    assert outage["notice"] == {"n": told, "p50_minutes": 5.0, "p95_minutes": 5.0}
    assert outage["resolution"] == {"n": told, "p50_minutes": 3.0, "p95_minutes": 3.0}
    assert (outage["updates_sent"], outage["updates_per_customer"]) == (told, 1.0)
