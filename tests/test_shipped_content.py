"""Every shipped template renders for every sample customer, in every touch point."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    from flows.config import load_config
    from flows.engine.core import Engine
    from flows.settings import Settings
    from flows.store.customers import import_customers
    from flows.store.db import Store

    data = tmp_path_factory.mktemp("shipped")
    store = Store(f"sqlite:///{data / 'touchpoints.db'}")
    store.migrate()
    report = import_customers(store, REPO / "docs" / "examples" / "customers.csv", actor="test")
    assert report.rejected == 0
    settings = Settings(data_dir=data, config_file=REPO / "touchpoints.yaml", secret_key="test")
    engine = Engine(settings, config=load_config(REPO / "touchpoints.yaml"), store=store)
    yield engine
    store.dispose()


def test_the_sample_customers_are_about_fifty_varied_and_include_non_ascii_names(shipped):
    from flows.store.tables import Customer, Preference

    with shipped.store.session() as session:
        customers = session.query(Customer).all()
        opted_out = session.query(Preference).filter_by(subscribed=False).count()
    assert 45 <= len(customers) <= 60
    assert len({c.region for c in customers}) >= 4 and len({c.timezone for c in customers}) >= 3
    assert len({c.plan for c in customers}) >= 3 and opted_out > 0
    assert any(not c.name.isascii() for c in customers)
    assert len({c.contract_end.month for c in customers}) >= 6


def test_every_message_of_every_touch_point_renders_for_every_sample_customer(shipped):
    from flows.engine.preview import preview
    from flows.store.customers import to_view
    from flows.store.tables import Customer

    with shipped.store.session() as session:
        customers = [to_view(c) for c in session.query(Customer).order_by(Customer.id)]
    rendered, failures = 0, []
    for name in shipped.config.touchpoints:
        for customer in customers:
            for message in preview(shipped, name, customer):
                rendered += 1
                if message.error or not message.subject or not message.text.strip():
                    failures.append(f"{name}/{message.step_id} for {customer.id}: {message.error}")
    assert not failures, failures[:10]
    assert rendered >= len(customers) * len(shipped.config.touchpoints)
