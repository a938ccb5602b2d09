"""Business actions shared by the web pages and the CLI (flows/actions.py)."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest

from flows import actions, clock
from flows.errors import NotFoundError
from flows.store.tables import Preference, Survey, Task
from tests.fixtures.terminal import wide_terminal
from tests.web.support import (
    RecordingLauncher,
    add_customer,
    add_survey,
    add_task,
    add_waiting_journey,
    audit_rows,
    events,
    get,
    member,
)


@pytest.fixture
def engine(settings, sqlite_store):
    from flows.engine.core import Engine

    return Engine(settings, store=sqlite_store)


@pytest.fixture
def launcher():
    return RecordingLauncher()


@pytest.fixture
def dispatcher(engine, launcher):
    from flows.engine.dispatch import Dispatcher

    return Dispatcher(engine, launcher)


@pytest.fixture
def customer(engine):
    return add_customer(engine)


# --------------------------------------------------------------------------- surveys
def test_answering_a_survey_stores_audits_and_emits_survey_answered(engine, dispatcher, launcher,
                                                                    customer):
    journey_id = add_waiting_journey(engine, customer)
    survey_id = add_survey(engine, customer, question="nps", journey_id=journey_id)

    result = actions.answer_survey(engine, dispatcher, survey_id, score="3", comment=" slow ",
                                   actor="web")

    assert (result["score"], result["comment"], result["answered"]) == (3, "slow", True)
    survey = get(engine, Survey, survey_id)
    assert (survey.score, survey.comment) == (3, "slow") and survey.answered_at is not None
    [row] = audit_rows(engine, "survey.answered")
    assert (row.actor, row.result, row.step, row.journey_id) == ("web", "answered", "sale_csat",
                                                                 journey_id)
    [event] = events(engine, "survey.answered")
    assert event.id == f"survey-{survey_id}" and event.source == "web"
    assert event.data == {"survey_id": survey_id, "journey_id": journey_id, "step_id": "sale_csat",
                          "question": "nps", "score": 3, "answer": None, "comment": "slow",
                          "result": {"answered": True, "score": 3, "answer": None,
                                     "comment": "slow"}}
    assert launcher.resumed[0]["journey_id"] == journey_id
    assert member(engine, journey_id).results["sale_csat"]["score"] == 3


@pytest.mark.parametrize("question,good,bad", [
    ("nps", [0, 10, "7"], [-1, 11, "x", None, 4.5]),
    ("csat", [1, 5], [0, 6, None]),
])
def test_scores_are_checked_against_the_scale(engine, dispatcher, customer, question, good, bad):
    for score in bad:
        survey_id = add_survey(engine, customer, question=question)
        with pytest.raises(actions.InvalidAnswer):
            actions.answer_survey(engine, dispatcher, survey_id, score=score, actor="web")
        assert get(engine, Survey, survey_id).answered_at is None
    for score in good:
        survey_id = add_survey(engine, customer, question=question)
        actions.answer_survey(engine, dispatcher, survey_id, score=score, actor="web")
        assert get(engine, Survey, survey_id).score == int(score)


def test_a_custom_answer_must_be_one_of_the_choices(engine, dispatcher, customer):
    survey_id = add_survey(engine, customer, question="custom", choices=["Phone", "Email"])
    with pytest.raises(actions.InvalidAnswer, match="not one of the answers"):
        actions.answer_survey(engine, dispatcher, survey_id, answer="Pigeon", actor="web")
    result = actions.answer_survey(engine, dispatcher, survey_id, answer="Email", actor="web")
    assert result["answer"] == "Email" and result["score"] is None


def test_a_survey_can_be_answered_once(engine, dispatcher, customer):
    survey_id = add_survey(engine, customer)
    actions.answer_survey(engine, dispatcher, survey_id, score=9, actor="web")
    with pytest.raises(actions.SurveyUnavailable):
        actions.answer_survey(engine, dispatcher, survey_id, score=1, actor="web")
    assert get(engine, Survey, survey_id).score == 9
    assert len(audit_rows(engine, "survey.answered")) == 1


def test_an_expired_or_unknown_survey_is_refused(engine, dispatcher, customer):
    expired = add_survey(engine, customer, expires_at=clock.now() - timedelta(seconds=1))
    for survey_id in (expired, "no-such-survey"):
        with pytest.raises(actions.SurveyUnavailable):
            actions.answer_survey(engine, dispatcher, survey_id, score=9, actor="web")
    assert events(engine) == []


def test_two_concurrent_answers_cannot_both_win(engine, dispatcher, customer):
    survey_id = add_survey(engine, customer)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def answer(score: int) -> None:
        barrier.wait()
        try:
            actions.answer_survey(engine, dispatcher, survey_id, score=score, actor="web")
            outcomes.append("won")
        except actions.SurveyUnavailable:
            outcomes.append("refused")

    threads = [threading.Thread(target=answer, args=(n,)) for n in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]
    assert len(audit_rows(engine, "survey.answered")) == 1
    assert len(events(engine, "survey.answered")) == 1


# --------------------------------------------------------------------------- tasks
def test_acknowledging_then_completing_a_task_emits_both_events(engine, dispatcher, customer):
    task_id = add_task(engine, customer, journey_id="j-1")
    ack = actions.acknowledge_task(engine, dispatcher, task_id, by="priya@northwind.example",
                                   actor="cli:priya")
    done = actions.complete_task(engine, dispatcher, task_id, by="priya@northwind.example",
                                 outcome="Booked for Tuesday 9am.", actor="cli:priya")

    assert ack["status"] == "acknowledged" and done["status"] == "completed"
    task = get(engine, Task, task_id)
    assert (task.status, task.outcome, task.acknowledged_by) == (
        "completed", "Booked for Tuesday 9am.", "priya@northwind.example")
    assert [e.id for e in events(engine)] == [f"task-ack-{task_id}", f"task-done-{task_id}"]
    acked, completed = events(engine)
    assert acked.data["acknowledged_by"] == "priya@northwind.example"
    assert acked.data["result"]["status"] == "acknowledged"
    assert completed.data["outcome"] == "Booked for Tuesday 9am."
    assert completed.data["completed_by"] == "priya@northwind.example"
    assert completed.data["journey_id"] == "j-1" and completed.data["step_id"] == "schedule_install"
    assert completed.source == "cli"
    assert [r.actor for r in audit_rows(engine, "task.completed")] == ["cli:priya"]


def test_a_task_cannot_be_completed_twice_or_acknowledged_after(engine, dispatcher, customer):
    task_id = add_task(engine, customer)
    actions.complete_task(engine, dispatcher, task_id, by="a@x.example", outcome="Done.", actor="web:a")
    with pytest.raises(actions.TaskStateError, match="already completed"):
        actions.complete_task(engine, dispatcher, task_id, by="b@x.example", outcome="Again.",
                              actor="web:b")
    with pytest.raises(actions.TaskStateError):
        actions.acknowledge_task(engine, dispatcher, task_id, by="b@x.example", actor="web:b")
    assert get(engine, Task, task_id).completed_by == "a@x.example"
    assert len(events(engine)) == 1


def test_a_task_is_acknowledged_once(engine, dispatcher, customer):
    task_id = add_task(engine, customer)
    actions.acknowledge_task(engine, dispatcher, task_id, by="a@x.example", actor="web:a")
    with pytest.raises(actions.TaskStateError, match="already acknowledged by a@x.example"):
        actions.acknowledge_task(engine, dispatcher, task_id, by="b@x.example", actor="web:b")


def test_completing_needs_an_outcome_and_an_unknown_task_is_not_found(engine, dispatcher, customer):
    task_id = add_task(engine, customer)
    with pytest.raises(actions.InvalidAnswer):
        actions.complete_task(engine, dispatcher, task_id, by="a@x.example", outcome=" ", actor="web:a")
    with pytest.raises(NotFoundError):
        actions.acknowledge_task(engine, dispatcher, "T-nope", by="a@x.example", actor="web:a")
    assert get(engine, Task, task_id).status == "open"


# --------------------------------------------------------------------------- preferences
def test_unsubscribing_turns_a_category_off_and_audits_it(engine, customer):
    result = actions.unsubscribe(engine, customer, "surveys", source="one-click", actor="web")
    assert result.ok and result.changed == {"surveys": False}
    row = get(engine, Preference, (customer, "surveys"))
    assert (row.subscribed, row.source) == (False, "one-click")
    again = actions.unsubscribe(engine, customer, "surveys", source="one-click", actor="web")
    assert again.ok and again.changed == {} and again.unchanged == ["surveys"]
    assert len(audit_rows(engine, "preference.changed")) == 1


def test_a_transactional_category_cannot_be_turned_off(engine, customer):
    result = actions.unsubscribe(engine, customer, "outage", source="web", actor="web")
    assert not result.ok
    assert "cannot be turned off" in result.refused["outage"]
    assert get(engine, Preference, (customer, "outage")) is None
    [row] = audit_rows(engine, "preference.changed")
    assert row.result == "refused"


def test_set_preferences_changes_only_what_differs(engine, customer):
    result = actions.set_preferences(engine, customer, {"surveys": False, "marketing": True,
                                                        "billing": False}, actor="cli:ops")
    assert result.changed == {"surveys": False}
    assert "marketing" in result.unchanged
    assert "billing" in result.refused
    with engine.store.session() as session:
        assert actions.subscriptions(session, engine.config, customer)["surveys"] is False
    back = actions.set_preferences(engine, customer, {"surveys": True}, actor="cli:ops")
    assert back.changed == {"surveys": True}


def test_preferences_of_an_unknown_customer_are_not_found(engine):
    with pytest.raises(NotFoundError):
        actions.unsubscribe(engine, "C-404", "surveys", source="web", actor="web")


# --------------------------------------------------------------------------- the CLI
@pytest.fixture
def cli(engine, dispatcher, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import _register_all, app
    from flows.cli import prefs as prefs_cli
    from flows.cli import tasks as tasks_cli

    monkeypatch.setattr(tasks_cli, "_engine", lambda: engine)
    monkeypatch.setattr(tasks_cli, "_dispatcher", lambda _engine: dispatcher)
    monkeypatch.setattr(prefs_cli, "_engine", lambda: engine)
    wide_terminal(monkeypatch)
    _register_all()
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return run


def test_tasks_list_marks_overdue_tasks_and_filters_by_team_and_status(cli, engine, customer):
    import json

    overdue = add_task(engine, customer, title="Late one", due_at=clock.now() - timedelta(hours=2))
    add_task(engine, customer, title="Billing one", team="billing")
    done = add_task(engine, customer, title="Done one", status="completed")

    listed = cli("tasks", "list", "--team", "install")
    assert listed.exit_code == 0
    assert "Late one" in listed.stdout and "OVERDUE" in listed.stdout
    assert "Billing one" not in listed.stdout and "Done one" not in listed.stdout

    rows = json.loads(cli("tasks", "list", "--status", "all", "--json").stdout)
    assert {r["id"] for r in rows} >= {overdue, done}
    assert next(r for r in rows if r["id"] == overdue)["overdue"] is True
    completed = json.loads(cli("tasks", "list", "--status", "completed", "--json").stdout)
    assert [r["id"] for r in completed] == [done]


def test_tasks_ack_and_complete_from_the_cli(cli, engine, customer):
    task_id = add_task(engine, customer)
    acked = cli("tasks", "ack", task_id, "--by", "priya@northwind.example")
    assert acked.exit_code == 0 and "acknowledged" in acked.stdout
    done = cli("tasks", "complete", task_id, "--outcome", "Booked.", "--by", "priya@northwind.example")
    assert done.exit_code == 0 and "completed" in done.stdout
    task = get(engine, Task, task_id)
    assert (task.status, task.outcome, task.completed_by) == ("completed", "Booked.",
                                                              "priya@northwind.example")
    [row] = audit_rows(engine, "task.completed")
    assert row.actor.startswith("cli:")
    with pytest.raises(actions.TaskStateError):
        cli("tasks", "complete", task_id, "--outcome", "Again.")


def test_tasks_link_prints_a_signed_team_url(cli, engine):
    out = cli("tasks", "link", "install").stdout.strip()
    assert out.startswith(engine.settings.base_url.rstrip("/") + "/teams/")
    claims = engine.signer.verify("team-tasks", out.rsplit("/", 1)[1])
    assert claims["team"] == "install" and claims["link"].startswith("TL-")  # tests/web/test_team_links.py


# --------------------------------------------------------------------------- escalation
@pytest.fixture
def mail_engine(settings, sqlite_store, smtp_server):
    from flows.engine.core import Engine

    return Engine(settings.model_copy(update={"smtp_url": smtp_server.url, "smtp_retries": 1,
                                              "smtp_backoff_seconds": 0.01}),
                  store=sqlite_store)


def recipients(smtp_server) -> list[str]:
    return [to for m in smtp_server.messages for to in m.envelope_to]


def test_each_escalation_level_is_emailed_once_when_its_time_comes(mail_engine, smtp_server):
    customer = add_customer(mail_engine)
    now = clock.now()
    task_id = add_task(mail_engine, customer, due_at=now - timedelta(hours=2))
    add_task(mail_engine, customer, title="Not due yet", due_at=now + timedelta(days=10))
    add_task(mail_engine, customer, title="Done already", status="completed",
             due_at=now - timedelta(days=3))

    first = actions.escalate_overdue(mail_engine, now=now)
    again = actions.escalate_overdue(mail_engine, now=now + timedelta(hours=1))

    assert [(r["task_id"], r["level"], r["status"]) for r in first] == [(task_id, 1, "sent")]
    assert again == []
    assert recipients(smtp_server) == ["install-lead@northwind.example"]
    later = actions.escalate_overdue(mail_engine, now=now + timedelta(days=1))
    assert [(r["level"], r["to"]) for r in later] == [(2, "ops-director@northwind.example")]
    assert actions.escalate_overdue(mail_engine, now=now + timedelta(days=5)) == []
    assert recipients(smtp_server) == ["install-lead@northwind.example",
                                       "ops-director@northwind.example"]
    assert get(mail_engine, Task, task_id).escalation_level == 2
    rows = audit_rows(mail_engine, "task.escalated")
    assert [(r.result, r.detail["level"], r.actor) for r in rows] == [
        ("sent", 1, "system:escalation"), ("sent", 2, "system:escalation")]


def test_a_task_overdue_past_every_level_gets_one_email_per_level(mail_engine, smtp_server):
    customer = add_customer(mail_engine)
    now = clock.now()
    task_id = add_task(mail_engine, customer, due_at=now - timedelta(days=2))
    actions.escalate_overdue(mail_engine, now=now)
    actions.escalate_overdue(mail_engine, now=now)
    assert sorted(recipients(smtp_server)) == ["install-lead@northwind.example",
                                               "ops-director@northwind.example"]
    assert get(mail_engine, Task, task_id).escalation_level == 2


def test_the_escalation_email_names_the_task_the_customer_and_its_links(mail_engine, smtp_server):
    customer = add_customer(mail_engine)
    task_id = add_task(mail_engine, customer, due_at=clock.now() - timedelta(hours=3),
                       title="Schedule the install for Ada Lovelace")
    actions.escalate_overdue(mail_engine, now=clock.now())
    [received] = smtp_server.messages
    message = received.message
    assert message["Subject"].startswith("Overdue: Schedule the install for Ada Lovelace")
    assert message["To"] == "install-lead@northwind.example"
    assert "List-Unsubscribe" not in message
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "overdue by 3 hours" in text and "Ada Lovelace (C-1001)" in text
    base = mail_engine.settings.base_url.rstrip("/")
    [token] = re.findall(re.escape(base) + r"/t/([A-Za-z0-9_.-]+)\s", text)
    assert mail_engine.signer.verify("task", token) == {"task": task_id}
    assert f"{base}/t/{token}" in html


def test_a_refused_escalation_is_retried_on_the_next_run(mail_engine, smtp_server):
    customer = add_customer(mail_engine)
    task_id = add_task(mail_engine, customer, due_at=clock.now() - timedelta(hours=1))
    smtp_server.fail_next(451, "try again later")
    [failed] = actions.escalate_overdue(mail_engine, now=clock.now())
    assert failed["status"] == "failed" and "451" in failed["reason"]
    assert get(mail_engine, Task, task_id).escalation_level == 0
    [sent] = actions.escalate_overdue(mail_engine, now=clock.now())
    assert sent["status"] == "sent"
    assert recipients(smtp_server) == ["install-lead@northwind.example"]
    assert [r.result for r in audit_rows(mail_engine, "task.escalated")] == ["failed", "sent"]


def test_tasks_escalate_from_the_cli(mail_engine, smtp_server, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import _register_all, app
    from flows.cli import tasks as tasks_cli

    monkeypatch.setattr(tasks_cli, "_engine", lambda: mail_engine)
    wide_terminal(monkeypatch)
    _register_all()
    customer = add_customer(mail_engine)
    task_id = add_task(mail_engine, customer, due_at=clock.now() - timedelta(hours=1))
    result = CliRunner().invoke(app, ["tasks", "escalate"], catch_exceptions=False)
    assert result.exit_code == 0
    assert f"{task_id} (install): level 1 to install-lead@northwind.example: sent" in result.stdout
    assert CliRunner().invoke(app, ["tasks", "escalate"]).stdout.strip() == "nothing to escalate"
    assert audit_rows(mail_engine, "task.escalated")[0].actor.startswith("cli:")


def test_prefs_set_and_link_from_the_cli(cli, engine, customer):
    off = cli("prefs", "set", customer, "surveys", "--off")
    assert off.exit_code == 0 and "now unsubscribed from surveys" in off.stdout
    assert get(engine, Preference, (customer, "surveys")).subscribed is False
    assert "already unsubscribed" in cli("prefs", "set", customer, "surveys", "--off").stdout
    with pytest.raises(actions.TouchpointsError, match="cannot be turned off"):
        cli("prefs", "set", customer, "outage", "--off")
    link = cli("prefs", "link", customer).stdout.strip()
    assert engine.signer.verify("preferences", link.rsplit("/", 1)[1]) == {"customer": customer}
