"""`touchpoints retry`: a member that failed is run again from the step it failed at, once the
cause is fixed, through a queued resume unit; the operations address hears of the failure."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from flows.cli import main
from flows.engine.launch import InProcessLauncher
from flows.engine.retry import retry_failed
from flows.store.tables import AuditRow, Journey, Member, WorkUnit
from tests.engine.test_journeys import mail_to
from tests.engine.test_redrive import north_addresses

ZOE = "zoe.harper@example.com"  # C-1001, in the north region
OPS = "ops@northwind.example"


@pytest.fixture
def broken_for_zoe(engine, monkeypatch):
    """The outage notice breaks for C-1001 until ``fix()`` is called."""
    from flows.engine.delivery import Deliverer

    real_send = Deliverer.prepare
    state = {"broken": True}

    def send(self, ctx, member, **kwargs):
        if state["broken"] and member.customer.id == "C-1001":
            raise ValueError("the template cannot handle this customer")
        return real_send(self, ctx, member, **kwargs)

    monkeypatch.setattr(Deliverer, "prepare", send)
    monkeypatch.setattr(engine.config.defaults, "operations", OPS)
    state["fix"] = lambda: state.update(broken=False)
    return state


def _member(engine, customer_id: str) -> Member:
    with engine.store.session() as session:
        return session.scalar(select(Member).where(Member.customer_id == customer_id))


def test_a_failed_member_is_retried_from_its_step_once_fixed_and_gets_one_notice(
        engine, emit, smtp_server, broken_for_zoe, clock, capsys):
    from flows.service.housekeeping import Housekeeper

    emit("outage.declared", regions=["north"], outage_id="OUT-9")
    assert _member(engine, "C-1001").status == "failed" and mail_to(smtp_server, ZOE) == []
    assert Housekeeper(engine, InProcessLauncher()).alerts(clock.now) == 1
    [report] = mail_to(smtp_server, OPS)
    assert report.message["Subject"] == "1 failed in outage"

    broken_for_zoe["fix"]()
    main(["journeys", "retry", "outage", "--customer", "C-1001", "--local"])
    printed = capsys.readouterr().out
    assert "retrying 1 member(s) of outage in 1 journey(s)" in printed
    assert "ran 1 resume run(s) here" in printed

    assert len(mail_to(smtp_server, ZOE)) == 1
    others = [a for a in north_addresses(engine) if a != ZOE]
    assert all(len(mail_to(smtp_server, a)) == 1 for a in others)  # nobody else twice
    member = _member(engine, "C-1001")
    assert member.status == "waiting" and member.pointer == "await_fix"  # on to the next step
    with engine.store.session() as session:
        retried = session.scalar(select(AuditRow).where(AuditRow.action == "journey.retried"))
        assert retried.customer_id == "C-1001" and retried.actor.startswith("cli:")
        assert "it had failed: ValueError: the template cannot handle" in retried.reason
        unit = session.scalar(select(WorkUnit).where(WorkUnit.id.like("resume:%:retry")))
        assert unit.status == "done"


def test_a_retry_only_queues_the_units_when_the_service_is_to_run_them(
        engine, emit, broken_for_zoe, smtp_server, capsys):
    emit("outage.declared", regions=["north"], outage_id="OUT-10")
    broken_for_zoe["fix"]()
    capsys.readouterr()
    main(["retry", "outage", "--queue", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["members"] == 1 and len(result["units"]) == 1 and not result["ran_here"]
    assert mail_to(smtp_server, ZOE) == []
    with engine.store.session() as session:
        unit = session.get(WorkUnit, result["units"][0])
        assert unit.status == "queued" and unit.kind == "resume"
        assert unit.params["mode"] == "after"
        member = session.scalar(select(Member).where(Member.customer_id == "C-1001"))
        assert member.status == "waiting" and member.due_at is not None
    assert retry_failed(engine, "outage", actor="test").members == 0  # nothing failed any more


def test_failed_members_of_a_cancelled_journey_are_not_retried(engine, emit, broken_for_zoe):
    emit("outage.declared", regions=["north"], outage_id="OUT-11")
    with engine.store.session() as session:
        journey = session.scalar(select(Journey).where(Journey.touchpoint == "outage"))
        journey.status = "cancelled"
    result = retry_failed(engine, "outage", actor="test")
    assert result.members == 0 and list(result.skipped.values()) == ["the journey is cancelled"]


def test_retrying_a_journey_that_does_not_exist_says_so(engine, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["retry", "outage", "--journey", "nope"])
    assert exited.value.code == 1
    assert "no journey 'nope'" in capsys.readouterr().err
