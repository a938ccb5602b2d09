"""Every event passes its contract on the way in, on both stores: bad data is refused before
anything is stored or started, with one ``event.refused`` audit row; good data is stored
exactly as sent; and the outbox tells in advance a start the entry rule will refuse."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from flows.errors import EventDataError
from flows.store.tables import AuditRow, Event
from tests.web.support import RecordingLauncher, add_customer


@pytest.fixture
def intake(settings, store):
    from flows.engine.core import Engine
    from flows.engine.dispatch import Dispatcher

    engine = Engine(settings, store=store)
    return Dispatcher(engine, RecordingLauncher())


def _rows(dispatcher, table, **where):
    with dispatcher.engine.store.session() as session:
        query = select(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return list(session.scalars(query))


def test_a_dispute_with_only_its_id_is_refused_and_audited_once(intake):
    customer = add_customer(intake.engine, "C-1001")
    with pytest.raises(EventDataError) as caught:
        intake.emit(type="billing.disputed", customer_id=customer, data={"dispute_id": "D-1"},
                    event_id="crm-d1", source="crm", actor="api:crm")
    assert set(caught.value.problems) == {"invoice_number", "amount_disputed", "reason",
                                          "raised_via"}
    assert _rows(intake, Event) == [] and intake.launcher.started == []
    [row] = _rows(intake, AuditRow, action="event.refused")
    assert (row.actor, row.customer_id, row.result) == ("api:crm", customer, "refused")
    assert row.detail == {"event_id": "crm-d1", "type": "billing.disputed",
                          "errors": caught.value.problems}


def test_good_data_is_stored_as_sent_and_starts_its_touch_point(intake):
    data = {"regions": ["north"], "eta": "2026-11-23T18:00:00Z", "from_the_noc": {"x": 1}}
    result = intake.emit(type="outage.declared", data=dict(data), event_id="noc-1")
    assert [s["touchpoint"] for s in result.started] == ["outage"]
    [row] = _rows(intake, Event)
    assert row.data == data
    assert _rows(intake, AuditRow, action="event.refused") == []


def test_the_outbox_says_in_advance_that_the_entry_rule_refuses_a_second_start(intake):
    from flows import clock
    from flows.engine.intake import entry_refusal
    from flows.engine.journeys import JourneyOps
    from flows.engine.matching import event_dict

    customer = add_customer(intake.engine, "C-1001")
    intake.outbox = True
    intake.emit(type="contract.signed", customer_id=customer, event_id="crm-1")
    assert entry_refusal(intake.engine, touchpoint="sale", event_id="crm-1",
                         customer_id=customer) is None
    with intake.engine.store.session() as session:
        JourneyOps(intake.engine).enter(
            session, touchpoint=intake.engine.touchpoint("sale"),
            event=event_dict(session.get(Event, "crm-1")), customer_id=customer,
            flow_run_id=None, now=clock.now())
    # its own journey holds the key: that is not a refusal of its own start
    assert entry_refusal(intake.engine, touchpoint="sale", event_id="crm-1",
                         customer_id=customer) is None
    intake.emit(type="contract.signed", customer_id=customer, event_id="crm-2")
    reason = entry_refusal(intake.engine, touchpoint="sale", event_id="crm-2",
                           customer_id=customer)
    assert reason and reason.startswith("entry rule once_per_cycle: journey ")


# ---------------------------------------------------------------------- the outbox's batches
def _item(event_id: str, customer_id: str | None, type: str = "contract.signed",
          data: dict | None = None) -> dict:
    from flows import clock

    return {"type": type, "customer_id": customer_id, "data": data or {}, "event_id": event_id,
            "occurred_at": None, "source": "crm", "actor": "api:crm", "now": clock.now()}


def _write(intake, items: list[dict]) -> list:
    from flows.engine.outbox import write_batch

    with intake.engine.store.session() as session:
        return write_batch(intake, session, items)


def test_concurrent_events_are_each_answered_with_their_own_once_stored(intake):
    from concurrent.futures import ThreadPoolExecutor

    from flows.store.audit_verify import verify
    from flows.store.tables import WorkUnit

    customers = [add_customer(intake.engine, f"C-{n}") for n in range(24)]
    intake.outbox = True

    def post(customer):
        return intake.emit(type="contract.signed", customer_id=customer,
                           event_id=f"crm-{customer}", source="crm", actor="api:crm")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, customers))
    assert [a.event_id for a in answers] == [f"crm-{c}" for c in customers]
    assert all([s["customer_id"] for s in a.started] == [c] for a, c in zip(answers, customers))
    assert not any(a.duplicate for a in answers)
    assert {r.id for r in _rows(intake, Event, status="dispatched")} == {a.event_id for a in answers}
    assert len(_rows(intake, WorkUnit, kind="start", status="queued")) == 24
    received = _rows(intake, AuditRow, action="event.received")
    assert sorted(r.customer_id for r in received) == sorted(customers)
    assert intake.inbox.items == 24 and 1 <= intake.inbox.batches <= 24
    with intake.engine.store.read_session() as session:
        assert verify(session).ok


def test_a_batch_stores_each_good_event_and_refuses_only_the_bad_one(intake):
    from flows.errors import ExpressionError, NotFoundError

    a, c = add_customer(intake.engine, "C-1"), add_customer(intake.engine, "C-3")
    intake.outbox = True
    # billing's filter reads event.data.first: without it the filter cannot be evaluated,
    # after the event was written (the contract would refuse it first; the batch must cope)
    outcomes = _write(intake, [_item("e-1", a), _item("e-2", "C-404"), _item("e-1", a),
                               _item("e-4", c, "invoice.issued"), _item("e-5", c)])
    first, unknown, again, broken, last = outcomes
    assert [s["touchpoint"] for s in first.started] == ["sale"] and not first.duplicate
    assert isinstance(unknown, NotFoundError) and "C-404" in unknown.message
    assert again.duplicate and again.started == ["sale"]
    assert isinstance(broken, ExpressionError)
    assert [s["touchpoint"] for s in last.started] == ["sale"]
    assert sorted(r.id for r in _rows(intake, Event)) == ["e-1", "e-5"]
    assert sorted(r.detail["event_id"] for r in _rows(intake, AuditRow,
                                                      action="event.received")) == ["e-1", "e-5"]


def test_two_events_of_one_customer_in_a_batch_are_both_stored_and_answered(intake):
    customer = add_customer(intake.engine, "C-1")
    intake.outbox = True
    first, second = _write(intake, [_item("e-1", customer), _item("e-2", customer)])
    assert [s["touchpoint"] for s in first.started] == ["sale"]
    assert [s["touchpoint"] for s in second.started] == ["sale"]  # no journey holds the key yet
    assert len(_rows(intake, Event)) == 2
