"""The service's periodic triggers on a real store: date-relative triggers fire once per
customer per cycle and catch up after downtime, inactivity fires once per silence, and a
schedule trigger becomes the deployment's cron schedule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from flows.store.tables import Customer, Event
from tests.engine.conftest import REPO, make_engine


class RecordingLauncher:
    def __init__(self) -> None:
        self.starts: list[dict] = []

    def start(self, touchpoint, *, event, customer_id, label, **unit):
        self.starts.append({"touchpoint": touchpoint, "customer_id": customer_id, "event": event})
        return {}

    def resume(self, *args, **kwargs):
        return {}

    def run_states(self, flow_run_ids):
        return {}


@pytest.fixture
def keeper(store, smtp_server, tmp_path, monkeypatch):
    from flows.engine.core import set_engine
    from flows.service.housekeeping import Housekeeper

    monkeypatch.setenv("TOUCHPOINTS_DATA_DIR", str(tmp_path / "data"))
    engine = make_engine(REPO / "touchpoints.yaml", smtp_server.url, monkeypatch, store)
    launcher = RecordingLauncher()
    yield Housekeeper(engine, launcher), launcher, engine
    set_engine(None)


def add_customer(engine, cid: str, *, contract_end: date, last_contact: datetime | None = None,
                 created: datetime | None = None) -> None:
    with engine.store.session() as session:
        session.add(Customer(id=cid, name=f"Customer {cid}", email=f"{cid.lower()}@example.com",
                             timezone="Europe/London", region="north", plan="Fibre 500",
                             contract_start=contract_end - timedelta(days=730),
                             contract_end=contract_end, attributes={},
                             last_contact_at=last_contact,
                             created_at=created or datetime(2026, 1, 1, tzinfo=UTC)))


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_renewal_fires_once_for_a_customer_90_days_before_contract_end(keeper):
    housekeeper, launcher, engine = keeper
    add_customer(engine, "R-1", contract_end=(NOW + timedelta(days=90)).date(), last_contact=NOW)
    add_customer(engine, "R-2", contract_end=(NOW + timedelta(days=200)).date(), last_contact=NOW)

    first = housekeeper.date_triggers(NOW)
    second = housekeeper.date_triggers(NOW + timedelta(minutes=5))

    assert first == 1 and second == 0
    assert housekeeper.drive()["launched"] == 1  # the trigger's unit becomes a run
    assert [(s["touchpoint"], s["customer_id"]) for s in launcher.starts] == [("renewal", "R-1")]
    with engine.store.session() as session:
        assert session.get(Event, launcher.starts[0]["event"]["id"]).status == "dispatched"


def test_a_renewal_that_fell_due_while_the_service_was_down_still_fires(keeper):
    housekeeper, launcher, engine = keeper
    add_customer(engine, "R-3", contract_end=(NOW + timedelta(days=87)).date(), last_contact=NOW)

    assert housekeeper.date_triggers(NOW) == 1  # three days late, inside the catch-up window
    housekeeper.drive()
    assert launcher.starts[0]["customer_id"] == "R-3"


def test_inactivity_fires_once_per_silence_and_not_for_customers_we_spoke_to(keeper):
    housekeeper, launcher, engine = keeper
    add_customer(engine, "Q-1", contract_end=date(2028, 1, 1), last_contact=NOW - timedelta(days=45))
    add_customer(engine, "Q-2", contract_end=date(2028, 1, 1), last_contact=NOW - timedelta(days=3))

    assert housekeeper.inactivity_triggers(NOW) == 1
    assert housekeeper.inactivity_triggers(NOW + timedelta(hours=1)) == 0
    housekeeper.drive()
    assert [(s["touchpoint"], s["customer_id"]) for s in launcher.starts] == [("check-in", "Q-1")]


def test_a_schedule_trigger_becomes_the_deployments_cron_schedule(keeper):
    from flows.service.deployments import build_deployments

    _, _, engine = keeper
    deployments = {d.name: d for d in build_deployments(engine)}

    review = deployments["business-review"]
    assert [s.schedule.cron for s in review.schedules] == [engine.touchpoint("business-review").trigger.cron]
    assert not deployments["sale"].schedules
    assert review.entrypoint == "flows.engine.entry.business_review"
