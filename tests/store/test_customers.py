"""The customer directory: one-customer upserts, views, preferences and streaming."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import event

from flows.errors import ImportRowsError, NotFoundError
from flows.steps.base import CustomerView
from flows.store import audit
from flows.store.customers import (
    get_customer,
    is_subscribed,
    set_preference,
    stream_customers,
    to_view,
    upsert_customer,
)
from flows.store.tables import Customer

ADA = {"id": "C-1", "name": "Ada Lovelace", "email": "ada@example.com",
       "timezone": "Europe/London", "region": "north", "plan": "Fibre 500",
       "contract_start": "2025-01-01", "contract_end": "2026-12-31",
       "account_owner": "sam@northwind.example", "account_owner_name": "Sam Okafor",
       "tier": "gold"}


def test_upsert_creates_then_updates_only_what_changed_and_audits_it(store):
    with store.session() as session:
        row = upsert_customer(session, ADA, actor="api:k1")
        assert row.attributes == {"tier": "gold"} and row.contract_start == date(2025, 1, 1)
    with store.session() as session:
        upsert_customer(session, ADA, actor="api:k1")  # the same again: nothing to audit
        upsert_customer(session, {**ADA, "plan": "Fibre 900", "unsubscribed": ["surveys"]},
                        actor="api:k1")
    with store.session() as session:
        rows = audit.query(session, customer_id="C-1")
        assert [(r.action, r.actor) for r in rows] == [("customer.created", "api:k1"),
                                                      ("customer.updated", "api:k1")]
        assert rows[1].detail == {"changed": ["plan"], "unsubscribed": ["surveys"], "source": "api"}
        assert session.get(Customer, "C-1").plan == "Fibre 900"
        assert not is_subscribed(session, "C-1", "surveys")


def test_upsert_refuses_invalid_data_with_the_reason(store):
    with store.session() as session, pytest.raises(ImportRowsError, match="email: 'nope'"):
        upsert_customer(session, {**ADA, "email": "nope"}, actor="api:k1")
    with store.session() as session:
        assert session.get(Customer, "C-1") is None


def test_get_customer_gives_the_view_steps_and_templates_use(store):
    with store.session() as session:
        upsert_customer(session, {**ADA, "name": "Zoë Ångström"}, actor="cli:ops")
    with store.session() as session:
        view = get_customer(session, "C-1")
    assert isinstance(view, CustomerView)
    assert (view.first_name, view.timezone, view.contract_end, view.attributes) == (
        "Zoë", "Europe/London", date(2026, 12, 31), {"tier": "gold"})
    with store.session() as session:
        assert to_view(session.get(Customer, "C-1")) == view


def test_an_unknown_customer_is_not_found_with_a_hint(store):
    with store.session() as session, pytest.raises(NotFoundError, match="unknown customer 'C-404'") as caught:
        get_customer(session, "C-404")
    assert "touchpoints customers list" in caught.value.hint


def test_preferences_default_to_subscribed_and_changes_are_audited(store):
    with store.session() as session:
        upsert_customer(session, ADA, actor="cli:ops")
    with store.session() as session:
        assert is_subscribed(session, "C-1", "marketing")
        assert set_preference(session, "C-1", "marketing", False, source="web", actor="web") is True
        assert set_preference(session, "C-1", "marketing", False, source="web", actor="web") is False
    with store.session() as session:
        assert not is_subscribed(session, "C-1", "marketing")
        assert set_preference(session, "C-1", "marketing", True, source="web", actor="web")
        assert is_subscribed(session, "C-1", "marketing")
        results = [r.result for r in audit.query(session, action="preference.changed")]
    assert results == ["unsubscribed", "subscribed"]
    with store.session() as session, pytest.raises(NotFoundError):
        set_preference(session, "C-404", "marketing", False, source="web", actor="web")


def test_stream_customers_pages_by_id_in_batches(store):
    with store.session() as session:
        session.add_all(Customer(id=f"C-{i:04d}", name=f"N{i}", email=f"c{i}@example.com",
                                 timezone="UTC", region="north" if i % 2 else "south",
                                 attributes={}) for i in range(1, 1_235))
    with store.session() as session:
        batches = list(stream_customers(session, 500))
        north = [c.id for batch in stream_customers(session, 100, region="north") for c in batch]
    assert [len(b) for b in batches] == [500, 500, 234]
    streamed = [c.id for batch in batches for c in batch]
    assert streamed == sorted(streamed) and len(set(streamed)) == 1_234
    assert len(north) == 617 and all(int(i[2:]) % 2 for i in north)


def test_stream_customers_keeps_only_one_batch_alive(store):
    """Keyset pagination: each batch is a fresh query, so earlier rows can be let go."""
    with store.session() as session:
        session.add_all(Customer(id=f"C-{i}", name="N", email=f"c{i}@example.com",
                                 timezone="UTC", attributes={}) for i in range(30))
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def seen(conn, cursor, statement, *args):
        if "FROM customers" in statement:
            statements.append(statement)

    try:
        with store.session() as session:
            assert sum(len(b) for b in stream_customers(session, 10)) == 30
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert len(statements) == 4 and all("LIMIT" in s for s in statements)
