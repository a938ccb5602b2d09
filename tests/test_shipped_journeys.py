"""The shipped touch points do what their own words say, end to end: events through the real
dispatcher, flows on the session's Prefect server, mail to a real SMTP server, state in a real
store (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from flows.store.tables import Journey, Member, Task
from tests.engine.conftest import clock, emit, engine  # noqa: F401 - the e2e fixtures

pytestmark = pytest.mark.e2e


def mail_to(smtp_server, address: str) -> list:
    return [m for m in smtp_server.messages if address in m.envelope_to]


def text_of(message) -> str:
    return message.message.get_body(("plain",)).get_content()


def start(touchpoint: str, customer_id: str | None = None) -> dict:
    """What `touchpoints run` does: one run of the touch point, here and now, through Prefect."""
    from flows import clock as engine_clock
    from flows.engine.launch import InProcessLauncher

    event = {"id": f"run-{uuid.uuid4().hex}", "type": "manual.run", "customer_id": customer_id,
             "data": {}, "occurred_at": engine_clock.now().isoformat()}
    return InProcessLauncher().start(touchpoint, event=event, customer_id=customer_id,
                                     label=customer_id or event["id"])


def complete(engine, emit, task: Task, outcome: str) -> None:  # noqa: F811
    from flows.actions import complete_task

    complete_task(engine, emit.dispatcher, task.id, by=task.owner or "am@northwind.example",
                  outcome=outcome, actor="test")


def open_task(engine, customer_id: str, step_id: str) -> Task:  # noqa: F811
    with engine.store.session() as session:
        task = session.scalar(select(Task).where(Task.customer_id == customer_id,
                                                 Task.step_id == step_id))
        session.expunge(task)
        return task


# --------------------------------------------------------------------------- business-review
def test_the_review_progress_note_waits_for_the_chase_task_and_sends_its_words_not_the_minutes(
        engine, emit, clock, smtp_server):  # noqa: F811
    customer, owner = "C-1006", "priya.shah@northwind.example"
    start("business-review")
    complete(engine, emit, open_task(engine, customer, "prepare_review"),
             "MINUTES: we agreed to add a backup 4G line by March.")
    minutes = mail_to(smtp_server, "a.mueller@example.org")
    assert len(minutes) == 1 and "MINUTES" in text_of(minutes[0])

    clock.advance(days=14, minutes=1)
    emit.dispatcher.resume_due()  # the chase task is created and the journey waits again

    with engine.store.session() as session:
        member = session.scalar(select(Member).join(Journey, Member.journey_id == Journey.id)
                                .where(Journey.touchpoint == "business-review",
                                       Member.customer_id == customer))
        assert (member.status, member.pointer, member.waiting_for) == (
            "waiting", "await_progress", "task.completed")
    assert len(mail_to(smtp_server, "a.mueller@example.org")) == 1  # no progress note yet

    complete(engine, emit, open_task(engine, customer, "chase_actions"),
             "PROGRESS: the 4G backup line is ordered and arrives on 3 March.")
    to_customer = mail_to(smtp_server, "a.mueller@example.org")
    assert len(to_customer) == 2
    progress = text_of(to_customer[1])
    assert "PROGRESS: the 4G backup line is ordered" in progress and "MINUTES" not in progress
    assert owner in str(to_customer[1].message["From"])


# --------------------------------------------------------------------------- install
def install_journeys(engine, customer_id: str) -> list[tuple[str, str]]:  # noqa: F811
    with engine.store.session() as session:
        rows = session.scalars(select(Journey).where(Journey.touchpoint == "install",
                                                     Journey.customer_id == customer_id)
                               .order_by(Journey.started_at)).all()
        return [(j.status, j.trigger["data"]["job_id"]) for j in rows]


def test_an_install_re_booked_after_the_chase_starts_a_new_install_journey_as_the_task_says(
        engine, emit, clock, smtp_server):  # noqa: F811
    emit("install.scheduled", "C-1002", job_id="JOB-1")
    clock.advance(days=14, minutes=1)
    emit.dispatcher.resume_due()  # never closed: the install team is asked to chase it
    chase = open_task(engine, "C-1002", "chase_install")
    assert "re-book it (this starts a new install journey)" in chase.body

    rebooked = emit("install.scheduled", "C-1002", job_id="JOB-2")

    assert [s["touchpoint"] for s in rebooked.started] == ["install"]
    assert install_journeys(engine, "C-1002") == [("done", "JOB-1"), ("active", "JOB-2")]
    assert len(mail_to(smtp_server, "oliver.bennett@example.com")) == 2  # two expectations emails


def test_an_install_re_booked_while_the_first_is_open_starts_once_the_first_is_cancelled(
        engine, emit, smtp_server):  # noqa: F811
    from flows.engine.cancel import cancel_for_customer

    emit("install.scheduled", "C-1002", job_id="JOB-1")
    refused = emit("install.scheduled", "C-1002", job_id="JOB-2")
    assert refused.started == []
    assert "after_end" in refused.skipped[0]["reason"]  # one install journey at a time

    cancel_for_customer(engine, "C-1002", "install", actor="test", reason="visit re-booked",
                        prefect=False)
    rebooked = emit("install.scheduled", "C-1002", job_id="JOB-2")

    assert [s["touchpoint"] for s in rebooked.started] == ["install"]
    assert install_journeys(engine, "C-1002") == [("cancelled", "JOB-1"), ("active", "JOB-2")]


def test_a_cancelled_once_per_cycle_journey_lets_the_next_trigger_start_afresh(engine, emit):  # noqa: F811
    from flows.engine.cancel import cancel_for_customer

    emit("contract.signed", "C-1001")
    cancel_for_customer(engine, "C-1001", "sale", actor="test", reason="contract withdrawn",
                        prefect=False)

    again = emit("contract.signed", "C-1001", contract_id="CT-2")

    assert [s["touchpoint"] for s in again.started] == ["sale"]


# --------------------------------------------------------------------------- survey links
def test_a_survey_deferred_to_the_send_window_lives_its_full_14_days_from_the_send(
        engine, emit, clock, smtp_server):  # noqa: F811
    from datetime import timedelta

    from flows.actions import survey_state
    from flows.store.tables import Survey

    emit("contract.signed", "C-1001")
    clock.advance(days=3, hours=12)  # 22:00 in London: the CSAT waits for 08:00
    emit.dispatcher.resume_due()
    assert len(mail_to(smtp_server, "zoe.harper@example.com")) == 1  # the welcome only
    sent_at = clock.advance(hours=10)
    emit.dispatcher.resume_due()
    assert len(mail_to(smtp_server, "zoe.harper@example.com")) == 2

    with engine.store.session() as session:
        survey = session.scalar(select(Survey).where(Survey.customer_id == "C-1001"))
        assert survey.expires_at == sent_at + timedelta(days=14)
        assert survey_state(survey, sent_at + timedelta(days=14, minutes=-1)) == "open"


# --------------------------------------------------------------------------- outage
UPDATE = "Outage update"
RESOLVED = "Your service is back: sorry for the disruption"


def subjects_to(smtp_server, address: str) -> list[str]:
    return [str(m.message["Subject"]) for m in mail_to(smtp_server, address)]


def test_an_outage_update_goes_out_while_the_outage_is_open_and_never_after_its_resolution(
        engine, emit, smtp_server):  # noqa: F811
    emit("outage.declared")
    emit("outage.updated")
    emit("outage.resolved")
    late = emit("outage.updated", eta="2026-11-24T02:00:00+00:00")  # the NOC's late revision

    subjects = subjects_to(smtp_server, "zoe.harper@example.com")  # C-1001, north
    assert [s.startswith(UPDATE) for s in subjects] == [False, True, False]
    assert subjects[2] == RESOLVED
    assert [s["touchpoint"] for s in late.started] == ["outage-update"]  # it ran, and sent nothing
    with engine.store.session() as session:
        members = session.scalars(select(Member).join(Journey, Member.journey_id == Journey.id)
                                  .where(Journey.id == late.started[0]["journey_id"])).all()
        assert members and {m.status for m in members} == {"exited"}
        assert "already resolved" in members[0].reason


def test_an_update_overtaken_by_the_resolution_before_its_run_starts_is_not_sent(
        engine, smtp_server):  # noqa: F811
    """In the service an update's run starts a moment after its event is stored: the resolution
    can land in between. The resolution notice is then the last word."""
    from flows.engine.dispatch import Dispatcher
    from flows.engine.launch import InProcessLauncher

    examples = {name: dict(spec.example or {}) for name, spec in engine.config.event_types().items()}

    class LateStart(InProcessLauncher):
        def start(self, touchpoint, **kwargs):
            if touchpoint == "outage-update":
                dispatcher.emit(type="outage.resolved", data=examples["outage.resolved"],
                                source="test", actor="test")
            return super().start(touchpoint, **kwargs)

    dispatcher = Dispatcher(engine, LateStart())
    dispatcher.emit(type="outage.declared", data=examples["outage.declared"], source="test")
    dispatcher.emit(type="outage.updated", data=examples["outage.updated"], source="test")

    subjects = subjects_to(smtp_server, "zoe.harper@example.com")
    assert subjects[-1] == RESOLVED
    assert not any(s.startswith(UPDATE) for s in subjects)
