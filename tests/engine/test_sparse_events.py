"""Monitoring may send only the regions of an outage: every affected customer still gets the
acknowledgement and the resolution, with honest wording for what is not known yet."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from flows.store.tables import AuditRow
from tests.engine.conftest import sample_customers

pytestmark = pytest.mark.e2e


def test_an_outage_with_only_its_regions_reaches_exactly_that_region_twice(engine, emit, smtp_server):
    north = {c["email"] for c in sample_customers() if c["region"] == "north"}

    emit.dispatcher.emit(type="outage.declared", data={"regions": ["north"]}, source="test")
    declared = list(smtp_server.messages)
    emit.dispatcher.emit(type="outage.resolved", data={"regions": ["north"]}, source="test")
    resolved = smtp_server.messages[len(declared):]

    assert {a for m in declared for a in m.envelope_to} == north
    assert {a for m in resolved for a in m.envelope_to} == north
    text = declared[0].message.get_body(("plain",)).get_content()
    assert "no estimate yet" in text
    with engine.store.session() as session:
        assert session.scalar(select(AuditRow).where(AuditRow.action == "email.failed")) is None
