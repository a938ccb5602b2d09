"""Network monitoring may send an outage with nothing but its regions. Every customer in those
regions still gets the acknowledgement and, once it is fixed, the resolution, worded honestly
about what we don't know yet; nothing fails to render."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from flows.store.tables import AuditRow
from tests.engine.conftest import sample_customers

pytestmark = pytest.mark.e2e

ONLY_NORTH = {"regions": ["north"]}


def _recipients(messages) -> list[str]:
    return sorted(address for m in messages for address in m.envelope_to)


def _failed_sends(engine) -> list[AuditRow]:
    with engine.store.session() as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.action == "email.failed")))


def test_an_outage_with_only_its_regions_reaches_every_customer_there(engine, emit, smtp_server):
    north = sorted(c["email"] for c in sample_customers() if c["region"] == "north")
    assert len(north) == 10
    dispatcher = emit.dispatcher  # straight to the dispatcher: emit() would merge in the example

    dispatcher.emit(type="outage.declared", data=dict(ONLY_NORTH), source="test")
    declared = list(smtp_server.messages)
    assert _recipients(declared) == north  # one acknowledgement each, nobody else
    assert {m.message["Subject"] for m in declared} == {"We know your service is down, and we're fixing it"}
    text = declared[0].message.get_body(("plain",)).get_content()
    assert "we don't have an estimated fix time yet; we'll email you as soon as we do" in text
    assert "Reference:" not in text  # no made-up reference when the NOC sent none
    assert _failed_sends(engine) == []

    # a sparse resolution elsewhere does not close the north outage...
    dispatcher.emit(type="outage.resolved", data={"regions": ["south"]}, source="test")
    assert len(smtp_server.messages) == len(declared)

    # ...and a sparse resolution in the north reaches the same customers
    dispatcher.emit(type="outage.resolved", data=dict(ONLY_NORTH), source="test")
    resolved = smtp_server.messages[len(declared):]
    assert _recipients(resolved) == north
    assert {m.message["Subject"] for m in resolved} == {"Your service is back: sorry for the disruption"}
    assert _failed_sends(engine) == []
