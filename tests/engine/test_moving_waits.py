"""Waits relative to a customer's date move when the date changes: the renewal's 60-day email
goes out 60 days before the contract end the customer has now, whoever changed it (the CRM
through PUT /api/customers/{id} or the bulk import, or a contract.renewed event).

Real parts: the shipped touchpoints.yaml, the web app under FastAPI's TestClient, the store on
SQLite and PostgreSQL, the session's Prefect server, an SMTP server on 127.0.0.1, a fake engine
clock (2026-11-24 10:00 UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from flows.store.tables import AuditRow, Continuation, Member, WorkUnit
from tests.engine.conftest import sample_customers
from tests.engine.test_goals import CUSTOMER, resume_at, start_renewal, subjects

pytestmark = pytest.mark.e2e

OPTIONS = "Your options for staying with Northwind"
OLD_DUE = datetime(2027, 1, 15, 10, 0, tzinfo=UTC)     # 60d before 2027-03-16, 10:00 Dublin


@pytest.fixture
def crm(engine, emit):
    """put(customer_id, **changes): the CRM's PUT of the whole customer, with changes."""
    from fastapi.testclient import TestClient

    from flows.web.app import create_app
    from tests.web.test_api_support import bearer, make_key

    key = make_key(engine)[1]
    rows = {row["id"]: row for row in sample_customers()}
    with TestClient(create_app(engine, emit.dispatcher)) as client:
        def put(customer_id: str, **changes):
            payload = {k: v for k, v in rows[customer_id].items() if k != "id" and v != ""}
            response = client.put(f"/api/customers/{customer_id}",
                                  json={**payload, **changes}, headers=bearer(key))
            assert response.status_code == 200, response.text
            return response.json()

        def bulk(items: list[dict]):
            response = client.post("/api/customers/import", json=items, headers=bearer(key))
            assert response.status_code == 200, response.text
            return response.json()

        put.bulk = bulk
        put.rows = rows
        yield put


def waiting(engine, journey_id: str) -> Member:
    with engine.store.session() as session:
        member = session.scalar(select(Member).where(Member.journey_id == journey_id))
        session.expunge_all()
    return member


def continuations(engine, journey_id: str) -> dict[datetime, str]:
    with engine.store.session() as session:
        return {c.due_at: c.status for c in session.scalars(select(Continuation).where(
            Continuation.journey_id == journey_id))}


def test_a_later_contract_end_sends_the_60_day_email_at_the_new_time_not_the_old(
        engine, clock, smtp_server, crm):
    from flows.engine.redrive import queue_continuations

    journey_id = start_renewal(engine)
    with engine.store.session() as session:   # the service queued its resume unit already
        queue_continuations(session, journey_id=journey_id)
    assert waiting(engine, journey_id).due_at == OLD_DUE

    crm(CUSTOMER, contract_end="2027-06-30")

    new_due = datetime(2027, 5, 1, 9, 0, tzinfo=UTC)       # 60d before, 10:00 Dublin (IST)
    assert waiting(engine, journey_id).due_at == new_due
    assert continuations(engine, journey_id) == {OLD_DUE: "cancelled", new_due: "pending"}
    with engine.store.session() as session:
        old_unit = session.scalar(select(WorkUnit).where(WorkUnit.journey_id == journey_id,
                                                         WorkUnit.kind == "resume"))
        assert old_unit.status == "done"
        moved = session.scalar(select(AuditRow).where(AuditRow.journey_id == journey_id,
                                                      AuditRow.action == "journey.rescheduled"))
        assert moved.result == "rescheduled" and moved.detail == {
            "step": "until_60d", "from": OLD_DUE.isoformat(), "to": new_due.isoformat()}

    assert resume_at(engine, clock, datetime(2027, 1, 15, 12, 0, tzinfo=UTC)) == []
    assert not any(s.startswith(OPTIONS) for s in subjects(smtp_server))
    resume_at(engine, clock, datetime(2027, 5, 1, 9, 1, tzinfo=UTC))
    assert any(s.startswith(OPTIONS) for s in subjects(smtp_server))
    assert waiting(engine, journey_id).pointer == "until_30d"


def test_an_earlier_contract_end_already_past_makes_the_wait_fall_due_now(
        engine, clock, smtp_server, crm):
    journey_id = start_renewal(engine)

    crm.bulk([{**{k: v for k, v in crm.rows[CUSTOMER].items() if v != ""},
               "contract_end": "2027-01-10"}])        # 60 days before is 11 November: past

    assert waiting(engine, journey_id).due_at == clock.now
    assert resume_at(engine, clock, clock.now) != []
    assert any(s.startswith(OPTIONS) for s in subjects(smtp_server))


def test_an_unchanged_contract_end_moves_nothing(engine, clock, crm):
    journey_id = start_renewal(engine)

    crm(CUSTOMER, plan="Fibre 500")

    assert waiting(engine, journey_id).due_at == OLD_DUE
    with engine.store.session() as session:
        assert not session.scalars(select(AuditRow).where(
            AuditRow.action == "journey.rescheduled")).all()


def test_a_file_import_that_moves_the_contract_end_moves_the_wait(engine, clock, tmp_path):
    import csv

    from flows.cli import main
    from tests.engine.conftest import CUSTOMERS

    journey_id = start_renewal(engine)
    with CUSTOMERS.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["id"] == CUSTOMER:
            row["contract_end"] = "2027-06-30"
    changed = tmp_path / "crm-export.csv"
    with changed.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    main(["customers", "import", str(changed)])   # returns on success

    assert waiting(engine, journey_id).due_at == datetime(2027, 5, 1, 9, 0, tzinfo=UTC)
    with engine.store.session() as session:
        assert [r.customer_id for r in session.scalars(select(AuditRow).where(
            AuditRow.action == "journey.rescheduled"))] == [CUSTOMER]
