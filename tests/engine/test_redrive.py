"""A crash mid-fan-out loses nobody: the store's leases say where every member stands, and the
unit driver drives a dead run's wave again from there. Accepted events are an outbox. A step
that breaks for one member fails that member alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from flows.store.tables import AuditRow, Delivery, Event, Member, WorkUnit
from tests.engine.test_journeys import mail_to

NORTH = ["C-1001", "C-1004", "C-1007"]  # a few of the north region's sample customers


class Crash(BaseException):
    """The process dying: not an Exception, so nothing in the engine catches it."""


def north_addresses(engine) -> list[str]:
    from flows.store.tables import Customer

    with engine.store.session() as session:
        return list(session.scalars(select(Customer.email).where(Customer.region == "north")))


def expire_leases(engine) -> None:
    """What time does to the leases of a run whose process is gone."""
    with engine.store.session() as session:
        session.execute(update(WorkUnit).where(WorkUnit.status == "leased")
                        .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_a_run_killed_mid_fan_out_is_driven_again_and_every_customer_gets_one_notice(
        engine, emit, smtp_server, monkeypatch):
    from flows.engine.core import MailSession
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import UnitDriver
    from flows.store import audit

    real_send, sent = MailSession.send, []

    def dies_on_the_fourth(self, message):
        if len(sent) == 3:
            raise Crash("kill -9")
        sent.append(message["To"])
        return real_send(self, message)

    monkeypatch.setattr(MailSession, "send", dies_on_the_fourth)
    with pytest.raises(Crash):
        emit("outage.declared", regions=["north"], outage_id="OUT-7")
    assert len(smtp_server.messages) == 3
    monkeypatch.setattr(MailSession, "send", real_send)

    driver = UnitDriver(engine, InProcessLauncher())
    assert driver.watch() == 0  # the lease is still live: nobody steals it
    expire_leases(engine)
    assert driver.watch() == 1 and driver.launch_queued() == 1

    addresses = north_addresses(engine)
    for address in addresses:
        assert len(mail_to(smtp_server, address)) == 1, address
    with engine.store.session() as session:
        assert session.scalar(select(Member).where(Member.status == "active")) is None
        ledger = session.scalars(select(Delivery).where(Delivery.step_id == "outage_acknowledged")).all()
        assert {row.status for row in ledger} == {"sent"} and len(ledger) == len(addresses)
        ids = {row.recipient: row.message_id for row in ledger}
        assert session.scalars(select(WorkUnit.status)).all() and all(
            status == "done" for status in session.scalars(select(WorkUnit.status)))
        assert audit.verify(session).ok
    for message in smtp_server.messages:  # the one in flight went again with its Message-ID
        to = message.envelope_to[0]
        if to in ids:
            assert message.message["Message-ID"] == ids[to]


def test_a_step_that_breaks_for_one_member_fails_that_member_and_the_batch_goes_on(
        engine, emit, smtp_server, monkeypatch):
    from flows.engine.delivery import Deliverer

    real_send = Deliverer.prepare

    def breaks_for_one(self, ctx, member, **kwargs):
        if member.customer.id == "C-1001":
            raise ValueError("the template cannot handle this customer")
        return real_send(self, ctx, member, **kwargs)

    monkeypatch.setattr(Deliverer, "prepare", breaks_for_one)
    emit("outage.declared", regions=["north"], outage_id="OUT-8")

    others = [a for a in north_addresses(engine) if a != "zoe.harper@example.com"]
    assert others and all(len(mail_to(smtp_server, a)) == 1 for a in others)
    assert mail_to(smtp_server, "zoe.harper@example.com") == []
    with engine.store.session() as session:
        failed = session.scalar(select(Member).where(Member.customer_id == "C-1001"))
        assert failed.status == "failed" and "cannot handle this customer" in failed.reason
        row = session.scalar(select(AuditRow).where(AuditRow.action == "journey.failed"))
        assert row.customer_id == "C-1001" and "outage_acknowledged" in row.reason


def test_a_member_failing_after_others_of_its_batch_leaves_their_holds_in_place(
        engine, emit, monkeypatch):
    from flows.engine.context import EngineContext
    from flows.store.tables import Customer, Hold

    with engine.store.session() as session:
        north = sorted(session.scalars(select(Customer.id).where(Customer.region == "north")))
    breaking = north[-1]  # run last when the batch is retried member by member
    real_render = EngineContext.render

    def breaks_for_one(self, text, member, **kwargs):
        if self.step_id == "quiet_during_outage" and member.customer.id == breaking:
            raise ValueError("the hold reason cannot handle this customer")
        return real_render(self, text, member, **kwargs)

    monkeypatch.setattr(EngineContext, "render", breaks_for_one)
    emit("outage.declared", regions=["north"], outage_id="OUT-9")

    with engine.store.session() as session:
        held = set(session.scalars(select(Hold.customer_id).where(
            Hold.source.like("%:quiet_during_outage"))))
        failed = session.scalar(select(Member).where(Member.customer_id == breaking))
    assert held == set(north) - {breaking}  # the members retried before it keep their hold
    assert failed.status == "failed" and "cannot handle this customer" in failed.reason


def test_the_service_intake_stores_the_event_and_its_units_without_calling_prefect(engine):
    from flows.engine.dispatch import Dispatcher
    from flows.engine.redrive import UnitDriver
    from tests.web.support import RecordingLauncher

    launcher = RecordingLauncher()
    result = Dispatcher(engine, launcher, outbox=True).emit(
        type="contract.signed", customer_id="C-1001", data={"plan": "Fibre 500"},
        event_id="crm-1", source="test")

    assert [s["touchpoint"] for s in result.started] == ["sale"]
    assert launcher.started == []  # nothing reached Prefect while the caller waited
    with engine.store.session() as session:
        assert session.get(Event, "crm-1").status == "dispatched"
        unit = session.get(WorkUnit, "start:sale:crm-1")
        assert unit.status == "queued" and unit.params["customer_id"] == "C-1001"

    launcher.run_states = lambda ids: {}
    assert UnitDriver(engine, launcher).launch_queued() == 1
    assert [s["touchpoint"] for s in launcher.started] == ["sale"]
    with engine.store.session() as session:
        assert session.get(WorkUnit, "start:sale:crm-1").status == "launched"


def test_the_watchdog_never_asks_prefect_about_continuations_that_are_not_due(engine):
    """Thousands of journeys wait for days, each on a Scheduled run: their states are not read
    at every tick (a tick is a quarter of a second), and a due unit whose run is gone behind
    600 of them is still driven again at once."""
    from flows.engine import units
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import UnitDriver

    class Asked(InProcessLauncher):
        def __init__(self) -> None:
            self.asked: list[str] = []

        def run_states(self, flow_run_ids):
            self.asked += flow_run_ids
            return {}

    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    with engine.store.session() as session:
        for n in range(600):
            units.queue(session, id=f"resume:wait-{n}", kind="resume", touchpoint="sale",
                        journey_id=None, label="", due_at=datetime.now(UTC) + timedelta(days=3),
                        params={})
        units.queue(session, id="resume:due", kind="resume", touchpoint="sale", journey_id=None,
                    label="", due_at=long_ago, params={})
        session.flush()
        session.execute(update(WorkUnit).values(status="launched", launched_at=long_ago,
                                                flow_run_id="run-" + WorkUnit.id))
    launcher = Asked()

    assert UnitDriver(engine, launcher).watch() == 1

    assert launcher.asked == ["run-resume:due"]
    with engine.store.session() as session:
        statuses = dict(session.execute(select(WorkUnit.id, WorkUnit.status)).all())
    assert statuses.pop("resume:due") == "queued"
    assert set(statuses.values()) == {"launched"}


def test_a_clean_stop_crashes_a_shared_run_once_and_queues_each_of_its_units_again(engine):
    from flows.engine import units
    from flows.engine.launch import InProcessLauncher
    from flows.engine.redrive import UnitDriver

    class Running(InProcessLauncher):
        def __init__(self) -> None:
            self.crashed: list[str] = []

        def run_states(self, flow_run_ids):
            return {i: {"type": "RUNNING", "name": "Running", "since": datetime.now(UTC)}
                    for i in flow_run_ids}

        def crash(self, flow_run_id, message):
            self.crashed.append(flow_run_id)

    with engine.store.session() as session:
        for n in range(3):  # three journey starts sharing one run
            units.queue(session, id=f"start:sale:evt-{n}", kind="start", touchpoint="sale",
                        params={})
        session.flush()
        session.execute(update(WorkUnit).values(status="launched", flow_run_id="run-1",
                                                launched_at=datetime.now(UTC)))
    launcher = Running()

    assert UnitDriver(engine, launcher).settle_on_stop() == 3

    assert launcher.crashed == ["run-1"]
    with engine.store.session() as session:
        assert set(session.scalars(select(WorkUnit.status))) == {"queued"}
