"""Outage and maintenance figures: notice and resolution latency (p50/p95) and updates per
customer, from the ledger and the journeys alone, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.config import load_config_fast
from flows.reports import outages
from flows.reports.queries import build
from flows.reports.sql import percentile
from flows.store.tables import Delivery, Journey, Member

ROOT = Path(__file__).resolve().parents[2]
DECLARED = datetime(2026, 11, 23, 6, 40, tzinfo=UTC)
RESOLVED = DECLARED + timedelta(hours=13)


@pytest.fixture(scope="module")
def config():
    return load_config_fast(ROOT / "touchpoints.yaml")


def _event(event_id, kind, at, **data) -> dict:
    return {"id": event_id, "type": kind, "customer_id": None, "occurred_at": at.isoformat(),
            "data": data}


def _sent(key, journey, tp, step, customer, at, status="sent") -> Delivery:
    return Delivery(key=key, journey_id=journey, step_id=step, customer_id=customer,
                    touchpoint=tp, category="outage", recipient=f"{customer}@x", message_id=key,
                    status=status, created_at=at, updated_at=at)


def _fill(session) -> None:
    """OUT-1: four customers told after 1, 2, 3 and 10 minutes, two updates each for two of them,
    resolution notices 5 and 7 minutes after the fix. OUT-2 (no notice sent yet): one customer."""
    session.add_all([
        Journey(id="o1", touchpoint="outage", entry_key="OUT-1", status="active",
                started_at=DECLARED,
                trigger=_event("e1", "outage.declared", DECLARED, outage_id="OUT-1")),
        Journey(id="o2", touchpoint="outage", entry_key="OUT-2", status="active",
                started_at=DECLARED + timedelta(days=2),
                trigger=_event("e2", "outage.declared", DECLARED + timedelta(days=2),
                               outage_id="OUT-2")),
        Journey(id="u1", touchpoint="outage-update", entry_key="e3", status="done",
                started_at=DECLARED + timedelta(hours=2),
                trigger=_event("e3", "outage.updated", DECLARED, outage_id="OUT-1")),
        Journey(id="u2", touchpoint="outage-update", entry_key="e4", status="done",
                started_at=DECLARED + timedelta(hours=4),
                trigger=_event("e4", "outage.updated", DECLARED, outage_id="OUT-1"))])
    session.flush()
    fix = {"await_fix": {"outcome": "event",
                         "event": _event("e5", "outage.resolved", RESOLVED, outage_id="OUT-1")}}
    for i, minutes in enumerate([1, 2, 3, 10]):
        customer = f"C-{i}"
        session.add(Member(journey_id="o1", customer_id=customer, status="waiting",
                           results=fix if i < 2 else {}))
        session.add(_sent(f"n{i}", "o1", "outage", "outage_acknowledged", customer,
                          DECLARED + timedelta(minutes=minutes)))
    session.add(Member(journey_id="o2", customer_id="C-9", status="active"))
    session.add(_sent("n9", "o2", "outage", "outage_acknowledged", "C-9", DECLARED,
                      status="deferred"))
    for journey in ("u1", "u2"):
        for customer in ("C-0", "C-1"):
            session.add(_sent(f"{journey}{customer}", journey, "outage-update", "new_estimate",
                              customer, DECLARED + timedelta(hours=3)))
    session.add(_sent("r0", "o1", "outage", "outage_resolved", "C-0",
                      RESOLVED + timedelta(minutes=5)))
    session.add(_sent("r1", "o1", "outage", "outage_resolved", "C-1",
                      RESOLVED + timedelta(minutes=7)))


def test_the_steps_come_from_touchpoints_yaml(config):
    specs = outages.specs(config)
    assert specs["outage"].notices == [("outage", "outage_acknowledged")]
    assert specs["outage"].resolutions == [("outage", "await_fix", "outage_resolved")]
    assert specs["outage"].updates == [("outage-update", ["new_estimate"])]
    assert specs["maintenance"].notices == [("maintenance-notice", "planned_work_notice")]
    assert specs["maintenance"].resolutions == [
        ("maintenance-notice", "await_work_done", "planned_work_complete")]


def test_notice_and_resolution_latency_and_updates_per_customer(store, config):
    with store.session() as session:
        _fill(session)
    with store.read_session() as session:
        data = build(session, config=config, now=DECLARED + timedelta(days=3))
    outage = data["outages"]["outage"]
    first, second = sorted(outage["incidents"], key=lambda e: e["id"])
    assert (first["id"], first["customers"], first["notified"]) == ("OUT-1", 4, 4)
    assert first["notice"] == {"n": 4, "p50_minutes": 2.0, "p95_minutes": 10.0}
    assert first["resolution"] == {"n": 2, "p50_minutes": 5.0, "p95_minutes": 7.0}
    assert datetime.fromisoformat(first["resolved_at"]) == RESOLVED
    assert (first["updates_sent"], first["updates_per_customer"],
            first["max_updates_per_customer"]) == (4, 1.0, 2)
    assert (second["id"], second["customers"], second["notified"]) == ("OUT-2", 1, 0)
    assert second["notice"]["p50_minutes"] is None
    assert outage["total"]["incidents"] == 2 and outage["total"]["updates_sent"] == 4
    assert outage["total"]["notice"]["p95_minutes"] == 10.0
    assert outage["weekly_notice"] == {"2026-W48": {"n": 4, "p50_minutes": 2.0,
                                                    "p95_minutes": 10.0}}
    assert data["outages"]["maintenance"]["total"]["incidents"] == 0
    json.dumps(data)  # plain numbers on PostgreSQL too (its sums of bigints are numeric)


def test_since_and_touchpoint_narrow_the_outage_figures(store, config):
    with store.session() as session:
        _fill(session)
    with store.read_session() as session:
        later = build(session, config=config, since=DECLARED + timedelta(days=1))
        assert [e["id"] for e in later["outages"]["outage"]["incidents"]] == ["OUT-2"]
        assert list(build(session, config=config, touchpoint="outage-update")["outages"]) == [
            "outage"]
        assert build(session, config=config, touchpoint="sale")["outages"] == {}


def test_percentiles_are_nearest_rank():
    assert percentile(Counter(), 0.5) is None
    assert percentile(Counter({60: 1}), 0.95) == 60
    values = Counter(range(1, 101))
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50, 95)


def test_the_median_of_a_histogram_is_the_mean_of_the_middle_two_for_an_even_n():
    from flows.reports.sql import median

    assert median(Counter()) is None
    assert median(Counter({5: 1, 9: 1})) == 7
    assert median(Counter({1: 2, 3: 1})) == 1
    assert median(Counter({1: 1, 2: 2, 10: 1})) == 2
