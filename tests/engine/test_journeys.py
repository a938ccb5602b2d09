"""End to end: events through the dispatcher, flows on a real Prefect server, mail to a real
SMTP server, state in a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from flows.store.tables import AuditRow, Continuation, Delivery, Journey, Member, Suppression, Task
from tests.engine.conftest import sample_customers

pytestmark = pytest.mark.e2e


def mail_to(smtp_server, address: str) -> list:
    return [m for m in smtp_server.messages if address in m.envelope_to]


def audit_actions(engine, **where) -> list[str]:
    with engine.store.session() as session:
        query = select(AuditRow.action).order_by(AuditRow.seq)
        for key, value in where.items():
            query = query.where(getattr(AuditRow, key) == value)
        return list(session.scalars(query))


def prefect_run(flow_run_id: str):
    """The flow run and its task runs, read back through the Prefect API."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            run = await client.read_flow_run(UUID(flow_run_id))
            flow = await client.read_flow(run.flow_id)
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            return flow, run, tasks

    return asyncio.run(read())


def test_a_signed_contract_sends_the_welcome_email_and_hands_the_install_to_the_install_team(engine, emit, smtp_server):
    result = emit("contract.signed", "C-1001")

    assert [s["touchpoint"] for s in result.started] == ["sale"]
    welcome = mail_to(smtp_server, "zoe.harper@example.com")
    assert len(welcome) == 1
    assert "Zoë" in welcome[0].message["Subject"] or "Zoë" in welcome[0].message.get_body(("plain",)).get_content()
    team_mail = mail_to(smtp_server, "installs@northwind.example")
    assert len(team_mail) == 1
    with engine.store.session() as session:
        task = session.scalar(select(Task).where(Task.customer_id == "C-1001"))
        assert task.team == "install" and task.status == "open"
        assert task.due_at > task.created_at
        waiting = session.scalar(select(Continuation).where(Continuation.touchpoint == "sale"))
        assert waiting.pointer == "settle_in" and waiting.status == "pending"
    actions = audit_actions(engine, customer_id="C-1001")
    assert {"event.received", "journey.started", "email.sent", "handoff.created", "journey.waiting"} <= set(actions)


def test_the_flow_run_and_its_step_tasks_are_visible_through_the_prefect_api(engine, emit):
    emit("contract.signed", "C-1001")
    with engine.store.session() as session:
        journey = session.scalar(select(Journey).where(Journey.customer_id == "C-1001"))

    flow, run, tasks = prefect_run(journey.flow_run_id)
    assert flow.name == "sale"
    assert run.name.startswith("C-1001 · ") and run.state_name == "Completed"
    assert {"touchpoint:sale", "customer:C-1001"} <= set(run.tags)
    names = {t.name for t in tasks}
    assert {"enter", "welcome", "schedule_install", "settle_in", "finish", "report"} <= names
    assert all(not t.tags for t in tasks)  # a tag would cost a lease round trip per task run


def test_the_same_event_under_the_once_per_cycle_rule_sends_no_second_email(engine, emit, smtp_server):
    emit("contract.signed", "C-1001")
    second = emit("contract.signed", "C-1001")

    assert len(mail_to(smtp_server, "zoe.harper@example.com")) == 1
    assert not second.started
    assert [s["touchpoint"] for s in second.skipped] == ["sale"]
    assert "once_per_cycle" in second.skipped[0]["reason"]
    assert "journey.refused" in audit_actions(engine, customer_id="C-1001")


def test_a_repeated_event_id_starts_nothing_new(engine, emit, smtp_server):
    emit("contract.signed", "C-1001", event_id="crm-42")
    again = emit("contract.signed", "C-1001", event_id="crm-42")

    assert again.duplicate
    assert len(mail_to(smtp_server, "zoe.harper@example.com")) == 1


def test_an_outage_notice_reaches_exactly_the_customers_in_the_affected_region(engine, emit, smtp_server):
    north = {c["email"] for c in sample_customers() if c["region"] == "north"}

    emit("outage.declared", regions=["north"], outage_id="OUT-7")

    customers = {c["email"] for c in sample_customers()}
    reached = {addr for m in smtp_server.messages for addr in m.envelope_to if addr in customers}
    assert reached == north
    with engine.store.session() as session:
        assert session.scalar(select(func.count()).select_from(Member)) == len(north)
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "sent")) >= len(north)


def test_an_outage_resolution_wakes_the_journey_waiting_for_it_and_notifies_the_same_customers(engine, emit, smtp_server):
    north = {c["email"] for c in sample_customers() if c["region"] == "north"}
    emit("outage.declared", regions=["north"], outage_id="OUT-8")
    before = len(smtp_server.messages)

    result = emit("outage.resolved", regions=["north"], outage_id="OUT-8")

    assert [w["touchpoint"] for w in result.resumed] == ["outage"]
    resolved = smtp_server.messages[before:]
    assert {a for m in resolved for a in m.envelope_to} == north


def test_a_customer_held_out_during_an_outage_gets_no_survey_and_the_audit_says_why(engine, emit, smtp_server, clock):
    emit("outage.declared", regions=["north"], outage_id="OUT-9")
    emit("contract.signed", "C-1001")  # C-1001 is in the north
    clock.advance(days=3, hours=1)

    emit.dispatcher.resume_due()

    with engine.store.session() as session:
        reasons = list(session.scalars(select(AuditRow.reason).where(
            AuditRow.customer_id == "C-1001", AuditRow.action == "email.suppressed")))
    assert any("held out" in r and "OUT-9" in r for r in reasons)


def test_a_customer_unsubscribed_from_surveys_gets_an_audited_suppression_not_a_silent_skip(engine, emit, smtp_server, clock):
    emit("contract.signed", "C-1004")  # C-1004 unsubscribed from surveys
    clock.advance(days=3, hours=1)
    emit.dispatcher.resume_due()

    with engine.store.session() as session:
        row = session.scalar(select(AuditRow).where(AuditRow.customer_id == "C-1004",
                                                    AuditRow.action == "email.suppressed"))
    assert row is not None and "unsubscribed from surveys" in row.reason


def test_a_survey_outside_the_send_window_is_deferred_to_the_windows_opening(engine, emit, clock):
    emit("contract.signed", "C-1001")
    clock.advance(days=3, hours=12)  # 22:00 in London: outside 08:00–20:00
    emit.dispatcher.resume_due()

    with engine.store.session() as session:
        deferred = session.scalar(select(Continuation).where(Continuation.kind == "defer"))
        assert deferred is not None and deferred.pointer == "sale_csat"
        assert deferred.due_at.hour == 8  # 08:00 London (UTC in November)
    assert "email.deferred" in audit_actions(engine, customer_id="C-1001")


def test_a_permanent_smtp_failure_is_a_bounce_that_suppresses_the_address(engine, emit, smtp_server):
    smtp_server.fail_next(550, "5.1.1 mailbox unavailable", times=1)

    emit("contract.signed", "C-1001")

    with engine.store.session() as session:
        assert session.get(Suppression, "zoe.harper@example.com") is not None
    assert "email.bounced" in audit_actions(engine, customer_id="C-1001")


def test_an_event_that_arrives_before_the_journey_reaches_its_wait_for_still_answers_it(engine, smtp_server):
    """In the service, runs start a moment after their event is stored, so the completion of an
    install can overtake the install journey: the wait_for must find it in the inbox."""
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher

    class LateStart(InProcessLauncher):
        def start(self, touchpoint, **kwargs):
            if touchpoint == "install":  # the completion lands before the run gets going
                dispatcher.emit(type="install.completed", customer_id="C-1002",
                                data=dict(engine.config.event_types()["install.completed"].example),
                                source="test", actor="test")
            return super().start(touchpoint, **kwargs)

    dispatcher = Dispatcher(engine, LateStart())
    dispatcher.emit(type="install.scheduled", customer_id="C-1002",
                    data=dict(engine.config.event_types()["install.scheduled"].example),
                    source="test", actor="test")

    with engine.store.session() as session:
        member = session.scalar(select(Member).where(Member.customer_id == "C-1002"))
        assert member.results["await_install"]["outcome"] == "event"
        assert member.pointer == "settle_after_install"  # carried on to the next wait
    assert "journey.event" in audit_actions(engine, customer_id="C-1002")


def test_the_third_ticket_of_one_category_within_30_days_starts_the_recurring_issue_journey(engine, emit, clock):
    first = emit("ticket.opened", "C-1005", category="wifi", ticket_id="T1")
    clock.advance(days=5)
    emit("ticket.opened", "C-1005", category="billing", ticket_id="T2")
    second = emit("ticket.opened", "C-1005", category="wifi", ticket_id="T3")
    clock.advance(days=5)
    third = emit("ticket.opened", "C-1005", category="wifi", ticket_id="T4")

    assert "recurring-issue" not in [s["touchpoint"] for s in first.started + second.started]
    assert [s["touchpoint"] for s in third.started] == ["recurring-issue"]
    with engine.store.session() as session:
        task = session.scalar(select(Task).where(Task.customer_id == "C-1005"))
    assert task.team == "account-management"
    assert all(t in task.body for t in ("T1", "T3", "T4")) and "T2" not in task.body
