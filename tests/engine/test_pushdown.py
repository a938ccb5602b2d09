"""Segments that SQL can express are narrowed in the customer query; the sandboxed expression
still decides, so a segment is the same set of customers with or without the push-down."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from flows.engine.pushdown import sql_filter
from flows.store.tables import Customer

EVENT = {"id": "e-1", "type": "outage.declared", "data": {"regions": ["north", "east"],
                                                          "plan": "Fibre 500", "n": 3}}


def sql(clauses) -> list[str]:
    return [str(c.compile(compile_kwargs={"literal_binds": True})) for c in clauses]


def test_a_region_list_from_the_event_becomes_an_in_clause():
    assert sql(sql_filter("customer.region in event.data.regions", EVENT)) == [
        "customers.region IN ('east', 'north')"]


def test_both_sides_of_an_and_narrow_the_query():
    found = sql(sql_filter("customer.region in event.data.regions and "
                           "customer.plan == event.data.plan", EVENT))
    assert found == ["customers.region IN ('east', 'north')", "customers.plan = 'Fibre 500'"]


@pytest.mark.parametrize("expression", [
    "customer.region in event.data.regions or customer.plan == 'x'",   # or: left to Python
    "not customer.region in event.data.regions",
    "customer.region in event.data.missing",                          # not in this event
    "customer.attributes.tier == 'gold'",                              # not a column
    "customer.region | upper in event.data.regions",
    "customer.region in event.data.n",                                 # not a list
    "customer.region in (",                                            # not even an expression
])
def test_what_sql_cannot_say_exactly_is_left_to_the_expression(expression):
    assert sql_filter(expression, EVENT) == []


def test_one_side_of_an_and_is_enough_to_narrow():
    assert sql(sql_filter("customer.region in event.data.regions and customer.plan | length > 3",
                          EVENT)) == ["customers.region IN ('east', 'north')"]


@lru_cache(maxsize=1)
def shipped_config():
    from flows.config import load_config

    return load_config(Path(__file__).resolve().parents[2] / "touchpoints.yaml")


REGIONS = st.sampled_from(["north", "south", "east", "west"])


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # rows reset per example
@given(customers=st.lists(st.tuples(REGIONS, st.sampled_from(["Fibre 500", "Fibre 150"])),
                          min_size=1, max_size=30),
       chosen=st.lists(REGIONS, min_size=1, max_size=3))
def test_a_pushed_down_segment_is_the_same_set_of_customers(sqlite_store, customers, chosen):
    from flows.engine.audience import iter_segment

    now = datetime(2026, 12, 3, tzinfo=UTC)
    with sqlite_store.session() as session:
        session.query(Customer).delete()
        session.add_all([Customer(id=f"C-{i:03d}", name=f"C {i}", email=f"c{i}@example.com",
                                  timezone="Europe/London", region=region, plan=plan,
                                  attributes={}, created_at=now, updated_at=now)
                         for i, (region, plan) in enumerate(customers)])
    event = {"id": "e", "type": "t", "data": {"regions": chosen, "plan": "Fibre 500"}}
    config = shipped_config()
    segment = "customer.region in event.data.regions and customer.plan == event.data.plan"
    touchpoint = config.touchpoints["outage"].model_copy(update={
        "audience": config.touchpoints["outage"].audience.model_copy(update={"segment": segment})})
    def segment_ids() -> list[str]:
        with sqlite_store.session() as session:
            return [cid for batch in iter_segment(session, touchpoint, event=event, config=config,
                                                  batch_size=7, now=now) for cid in batch]

    found = segment_ids()
    with patch("flows.engine.pushdown.sql_filter", lambda expression, event: []):
        in_python = segment_ids()  # the whole table through the expression, as before
    with sqlite_store.session() as session:
        expected = session.scalars(select(Customer.id).where(
            Customer.region.in_(chosen), Customer.plan == "Fibre 500").order_by(Customer.id)).all()
    assert found == in_python == list(expected)
