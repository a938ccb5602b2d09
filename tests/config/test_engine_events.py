"""The engine's own events (survey.answered, task.acknowledged, task.completed) have built-in
data contracts: `touchpoints check` proves templates and expressions against them whether or
not touchpoints.yaml declares them, a declaration must agree with them, and what the engine
really sends satisfies them. An event that declares no fields is checked against its example,
and a ``renamed_from`` naming a step that still exists is an error."""

from __future__ import annotations

import pytest

from flows import actions
from flows.config import check
from flows.config.contracts import check_data
from flows.config.models import ENGINE_EVENTS
from tests.config.support import HEADER, write_config
from tests.web.support import (
    RecordingLauncher,
    add_customer,
    add_survey,
    add_task,
    add_waiting_journey,
    events,
)


def _answered(template_line: str) -> str:
    return f"""\
        thanks:
          description: Thank whoever answered.
          trigger: {{event: survey.answered}}
          audience: customer
          entry: {{rule: every_time}}
          steps:
            - {{id: call, kind: handoff, team: install, title: "{template_line}"}}
        """


def _found(path) -> list[tuple[str, str, str | None]]:
    return [(d.path, d.message, d.hint) for d in check(path)]


# --------------------------------------------------------------------------- built in
def test_a_file_that_does_not_declare_the_engines_events_still_checks_against_their_fields(
        tmp_path):
    assert "survey.answered" not in HEADER
    path = write_config(tmp_path, _answered("Score {{ trigger.data.scroe }}"))
    [(where, message, hint)] = _found(path)
    assert where == "touchpoints.thanks.steps[0].title"
    assert message == "trigger.data.scroe is not a field of survey.answered"
    assert hint == "did you mean 'score'?"


def test_an_unguarded_optional_built_in_field_is_an_error_and_a_guarded_one_passes(tmp_path):
    path = write_config(tmp_path, _answered("Said {{ trigger.data.comment | upper }}"))
    [(where, message, hint)] = _found(path)
    assert where == "touchpoints.thanks.steps[0].title"
    assert "trigger.data.comment" in message and "optional in survey.answered" in message
    assert "is defined" in hint

    path = write_config(tmp_path, _answered(
        "Said {{ trigger.data.comment | default('nothing', true) }} ({{ trigger.data.survey_id }})"))
    assert _found(path) == []


def test_a_wait_for_an_engine_event_checks_its_match_against_the_built_in_fields(tmp_path):
    path = write_config(tmp_path, """\
        sale:
          description: Wait for the task.
          trigger: {event: contract.signed}
          audience: customer
          steps:
            - {id: book, kind: handoff, team: install, title: Book}
            - {id: booked, kind: wait_for, event: task.completed, timeout: 3d,
               match: "event.data.task_ref == steps.book.task_id"}
        """)
    [(where, message, _)] = _found(path)
    assert where == "touchpoints.sale.steps[1].match"
    assert message == "event.data.task_ref is not a field of task.completed"


# --------------------------------------------------------------------------- declared too
def _declaring(tmp_path, fields: str, example: str = "") -> list[tuple[int, str, str, str]]:
    header = HEADER.replace("touchpoints:\n", f"""\
  survey.answered:
    description: Our own words for it.
    fields:
{fields}{example}touchpoints:
""")
    path = write_config(tmp_path, _answered("Answered {{ trigger.data.survey_id }}"),
                        header=header)
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(lines[d.line - 1].strip(), d.path, d.message, d.format()) for d in check(path)]


def test_a_declared_engine_event_may_describe_it_and_add_optional_fields(tmp_path):
    assert _declaring(tmp_path, "      score: {type: integer, required: false, description: 0-10}\n"
                                "      channel: {type: string, required: false}\n") == []


def test_a_declared_engine_event_that_changes_a_built_in_type_is_an_error_at_its_line(tmp_path):
    [(line, path, message, formatted)] = _declaring(
        tmp_path, "      score: {type: string, required: false}\n")
    assert line.startswith("score: {type: string")
    assert path == "events['survey.answered'].fields.score.type"
    assert message == ("score is built in as integer: declaring it as string does not change "
                       "what Touchpoints sends")
    assert "hint: write type: integer" in formatted


def test_a_declared_engine_event_may_not_require_what_the_engine_may_leave_out(tmp_path):
    problems = _declaring(tmp_path, "      comment: {type: string, required: true}\n"
                                    "      channel: {type: string}\n",
                          "    example: {survey_id: s-1, comment: ok, channel: web}\n")
    assert [(p[1], p[2].split(":")[0]) for p in problems] == [
        ("events['survey.answered'].fields.comment.required",
         "comment is optional in the built-in contract of survey.answered"),
        ("events['survey.answered'].fields.channel",
         ("Touchpoints never sends 'channel' in survey.answered, so a required channel would "
          "refuse every survey.answered it sends")),
    ]


def test_a_declared_example_must_satisfy_the_built_in_fields(tmp_path):
    [(line, path, message, _)] = _declaring(
        tmp_path, "      score: {type: integer, required: false}\n",
        "    example: {score: 9}\n")
    assert line == "example: {score: 9}"
    assert path == "events['survey.answered'].example"
    assert "survey_id: required (a string) but missing" in message


# --------------------------------------------------------------------------- what is really sent
@pytest.fixture
def engine(settings, sqlite_store):
    from flows.engine.core import Engine

    return Engine(settings, store=sqlite_store)


def test_what_the_engine_sends_satisfies_the_built_in_contracts_field_for_field(engine):
    from flows.engine.dispatch import Dispatcher

    dispatcher = Dispatcher(engine, RecordingLauncher())
    customer = add_customer(engine)
    journey_id = add_waiting_journey(engine, customer)
    actions.answer_survey(engine, dispatcher, add_survey(engine, customer, question="nps",
                                                         journey_id=journey_id),
                          score="7", actor="web")
    actions.answer_survey(engine, dispatcher, add_survey(engine, customer, question="csat",
                                                         journey_id=journey_id, step_id="csat"),
                          score="4", comment="great", actor="web")
    task_id = add_task(engine, customer)
    actions.acknowledge_task(engine, dispatcher, task_id, by="a@example.com", actor="web")
    actions.complete_task(engine, dispatcher, task_id, by="a@example.com", outcome="Done",
                          actor="web")

    for name, spec in ENGINE_EVENTS.items():
        sent = events(engine, name)
        assert sent, f"no {name} was sent"
        for event in sent:
            assert check_data(spec.fields, event.data)[1] == {}, (name, event.data)
            assert set(event.data) <= set(spec.fields), (name, set(event.data) - set(spec.fields))
        assert set(spec.example) <= set(spec.fields)
        assert check_data(spec.fields, spec.example)[1] == {}


# --------------------------------------------------------------------------- no fields: the example
def _signed(where: str) -> str:
    return f"""\
        sale:
          description: Welcome.
          trigger: {{event: contract.signed, where: "{where}"}}
          audience: customer
          steps:
            - {{id: welcome, kind: email, subject: Hi, template: welcome, category: service}}
        """


def test_an_event_with_no_fields_has_its_expressions_evaluated_with_its_example(tmp_path):
    path = write_config(tmp_path, _signed("event.data.term_months > 12"))
    [(where, message, hint)] = _found(path)
    assert where == "touchpoints.sale.trigger.where"
    assert "term_months" in message
    assert hint.startswith("contract.signed declares no fields:, so the check renders "
                           "event.data with its example alone (plan, contract_id)")
    assert "events.contract.signed.fields" in hint and "add term_months" in hint


def test_an_event_with_no_fields_accepts_a_guarded_field_and_one_its_example_shows(tmp_path):
    assert _found(write_config(tmp_path, _signed(
        "event.data.plan != 'trial' and (event.data.term_months | default(0)) < 99"))) == []


def test_a_template_using_a_field_the_example_lacks_says_to_declare_the_fields(tmp_path):
    path = write_config(tmp_path, """\
        sale:
          description: Welcome.
          trigger: {event: contract.signed}
          audience: customer
          steps:
            - {id: call, kind: handoff, team: install, title: "Call about {{ trigger.data.router }}"}
        """)
    [(where, message, hint)] = _found(path)
    assert where == "touchpoints.sale.steps[0].title" and "router" in message
    assert "contract.signed declares no fields:" in hint


# --------------------------------------------------------------------------- renamed_from
def test_renamed_from_naming_a_step_that_still_exists_is_an_error_with_its_line(tmp_path):
    path = write_config(tmp_path, """\
        sale:
          description: Welcome.
          trigger: {event: contract.signed}
          audience: customer
          steps:
            - {id: pause, kind: wait, for: 1d}
            - id: welcome
              renamed_from: pause
              kind: email
              subject: Hi
              template: welcome
              category: service
        """)
    [diagnostic] = check(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[diagnostic.line - 1].strip() == "renamed_from: pause"
    assert diagnostic.headline() == (
        f"{path}:{diagnostic.line}:{diagnostic.col}: touchpoints.sale.steps[1].renamed_from: "
        "'pause' is still a step of this touch point, so renamed_from: pause would move nothing")
    assert diagnostic.hint.startswith("renamed_from names the id a step had before it was renamed")
    assert diagnostic.docs == "docs/getting-started.md"


def test_renamed_from_naming_an_id_that_is_gone_is_fine(tmp_path):
    path = write_config(tmp_path, """\
        sale:
          description: Welcome.
          trigger: {event: contract.signed}
          audience: customer
          steps:
            - {id: welcome, renamed_from: hello, kind: email, subject: Hi, template: welcome, category: service}
        """)
    assert check(path) == []
