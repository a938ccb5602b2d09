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
