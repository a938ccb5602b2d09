"""exit_if_arrived: a member leaves when a matching event is already in the inbox, within the
window and only then; the rest carry on. Run against a real store with the shipped config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.steps.base import Exit, Next

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def engine(store, tmp_path):
    from flows.config import load_config
    from flows.engine.core import Engine
    from flows.settings import Settings
    from flows.store.customers import import_customers

    assert import_customers(store, REPO / "docs" / "examples" / "customers.csv", actor="test").ok
    settings = Settings(data_dir=tmp_path / "data", config_file=REPO / "touchpoints.yaml",
                        secret_key="test")
    return Engine(settings, config=load_config(REPO / "touchpoints.yaml"), store=store)


def inbox(engine, event_type: str, *, ago: timedelta, customer_id: str | None = None,
          **data) -> None:
    from flows.store.tables import Event

    with engine.store.session() as session:
        session.add(Event(id=f"evt-{event_type}-{customer_id}-{ago.total_seconds()}",
                          type=event_type, customer_id=customer_id, data=data,
                          occurred_at=NOW - ago, received_at=NOW - ago))


def run_step(engine, step: dict, customer_ids: list[str], trigger_data: dict | None = None):
    from flows.engine.context import EngineContext
    from flows.steps.base import Member
    from flows.steps.exit_if_arrived import ExitIfArrivedStep, run
    from flows.store.customers import get_customer

    config = ExitIfArrivedStep.model_validate({"id": "guard", "kind": "exit_if_arrived", **step})
    trigger = {"id": "evt-trigger", "type": "outage.updated", "customer_id": None,
               "occurred_at": NOW.isoformat(), "data": trigger_data or {}}
    with engine.store.session() as session:
        members = [Member(id=i, customer=get_customer(session, cid), results={})
                   for i, cid in enumerate(customer_ids)]
        ctx = EngineContext(engine=engine, touchpoint=engine.touchpoint("outage-update"),
                            step_id="guard", journey_id="j-test", trigger=trigger,
                            flow_run_id=None, now=NOW, session=session)
        outcomes = run(config=config, ctx=ctx, members=members)
    return [outcomes[i] for i in range(len(customer_ids))]


def test_without_match_only_the_customer_the_event_is_about_leaves(engine):
    inbox(engine, "ticket.opened", ago=timedelta(hours=2), customer_id="C-1001")

    zoe, oliver = run_step(engine, {"event": "ticket.opened", "reason": "already has a ticket"},
                           ["C-1001", "C-1002"])

    assert isinstance(zoe, Exit) and zoe.reason == "already has a ticket"
    assert zoe.result["arrived"] is True and zoe.result["event"]["customer_id"] == "C-1001"
    assert isinstance(oliver, Next) and oliver.result == {"arrived": False, "event": None}


def test_an_event_older_than_the_window_does_not_count(engine):
    inbox(engine, "ticket.opened", ago=timedelta(days=2), customer_id="C-1001")

    [zoe] = run_step(engine, {"event": "ticket.opened", "within": "1d", "reason": "r"}, ["C-1001"])

    assert isinstance(zoe, Next)


def test_match_reads_the_event_and_the_trigger_and_a_reason_renders_for_the_member(engine):
    inbox(engine, "outage.resolved", ago=timedelta(minutes=5), outage_id="OUT-1", regions=["north"])

    same, other = (run_step(engine, {
        "event": "outage.resolved", "match": "event.data.outage_id == trigger.data.outage_id",
        "reason": "{{ trigger.data.outage_id }} resolved for {{ customer.first_name }}"},
        ["C-1001"], {"outage_id": outage})[0] for outage in ("OUT-1", "OUT-2"))

    assert isinstance(same, Exit) and same.reason == "OUT-1 resolved for Zoë"
    assert isinstance(other, Next)
