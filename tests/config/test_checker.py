"""`check` and `load_config`: one pass over the whole file, located diagnostics, sample data."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import check, load_config
from flows.errors import ConfigError
from tests.config.support import WELCOME, write_config

REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[str]:
    return [d.format(hint=False).split(": ", 1)[1] for d in check(path)]


def test_a_valid_file_has_no_diagnostics_and_loads(tmp_path):
    path = write_config(tmp_path, WELCOME)
    assert check(path) == []
    config = load_config(path)
    assert config.touchpoint("sale").steps[0].template == "welcome"


def test_the_projects_own_touchpoints_file_checks_clean():
    assert [d.format() for d in check(REPO / "touchpoints.yaml")] == []


def test_every_error_is_reported_in_one_pass_sorted_by_line(tmp_path):
    path = write_config(tmp_path, """\
        sale:
          description: Welcome.
          trigger: {event: contract.signed}
          audience: customer
          steps:
            - {id: welcome, kind: email, subject: Hi, template: welcome, category: survey, timout: 3d}
            - {id: book, kind: handoff, team: instal, title: "Book {{ steps.later.x }}"}
            - {id: settle_in, kind: wait, for: 3 days}
            - {id: later, kind: exit, goal: Done}
        """)
    diagnostics = check(path)
    assert [(d.path, d.message) for d in diagnostics] == [
        ("touchpoints.sale.steps[0].category", "unknown category 'survey'"),
        ("touchpoints.sale.steps[0].timout", "unknown field 'timout'"),
        ("touchpoints.sale.steps[1].team", "unknown team 'instal'"),
        ("touchpoints.sale.steps[1].title", "'steps.later' is not an earlier step"),
        ("touchpoints.sale.steps[2].for",
         "'3 days' is not a duration; write a number and a unit, e.g. 30m, 4h, 3d, 2w"),
    ]
    assert diagnostics == sorted(diagnostics)
    assert [d.line for d in diagnostics] == sorted(d.line for d in diagnostics)


def test_load_config_raises_a_config_error_carrying_every_diagnostic(tmp_path):
    path = write_config(tmp_path, WELCOME.replace("category: service", "category: nope")
                        .replace("template: welcome", "template: absent"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [d.message for d in caught.value.diagnostics] == [
        "template absent.html does not exist", "template absent.txt does not exist",
        "unknown category 'nope'"]
    assert str(path) in str(caught.value)


def test_an_unknown_key_is_reported_at_the_key_with_a_did_you_mean_hint(tmp_path):
    path = write_config(tmp_path, WELCOME.replace("audience: customer",
                                                  "audience: customer\n  enabeld: false"))
    [d] = check(path)
    text = path.read_text().splitlines()
    assert text[d.line - 1][d.col - 1:].startswith("enabeld:")
    assert (d.path, d.message, d.hint) == ("touchpoints.sale.enabeld", "unknown field 'enabeld'",
                                           "did you mean 'enabled'?")
    assert d.docs == "docs/getting-started.md"


def test_a_wrong_type_is_reported_at_the_value_and_step_problems_point_at_the_reference(tmp_path):
    path = write_config(tmp_path, WELCOME.replace("category: service", "category: [service]"))
    [d] = check(path)
    line = path.read_text().splitlines()[d.line - 1]
    assert line[d.col - 1:].startswith("[service]")
    assert d.path == "touchpoints.sale.steps[0].category"
    assert d.docs == "docs/reference.md"


def test_an_unknown_step_kind_suggests_the_closest_registered_kind(tmp_path):
    path = write_config(tmp_path, WELCOME.replace("kind: email", "kind: emial"))
    [d] = check(path)
    assert (d.message, d.hint) == ("unknown step kind 'emial'", "did you mean 'email'?")


def test_the_format_is_file_line_col_path_message_then_the_hint(tmp_path, monkeypatch):
    write_config(tmp_path, WELCOME.replace("category: service", "category: survey"))
    monkeypatch.chdir(tmp_path)
    [d] = check("touchpoints.yaml")
    assert d.format() == (
        f"touchpoints.yaml:{d.line}:{d.col}: touchpoints.sale.steps[0].category: unknown "
        "category 'survey'\n  hint: did you mean 'surveys'? (see docs/reference.md)")
    assert d.to_dict() == {"file": "touchpoints.yaml", "line": d.line, "col": d.col,
                           "path": "touchpoints.sale.steps[0].category",
                           "message": "unknown category 'survey'",
                           "hint": "did you mean 'surveys'?", "docs": "docs/reference.md"}


# --------------------------------------------------------------------------- earlier steps
BRANCHY = """\
sale:
  description: Welcome.
  trigger: {event: contract.signed}
  audience: customer
  steps:
    - {id: ask, kind: survey, question: nps, subject: "Quick question", template: survey}
    - {id: await_answer, kind: wait_for, event: survey.answered, timeout: 5d}
    - id: unhappy
      kind: branch
      when:
        - if: "steps.ask.score is not none and steps.ask.score <= 6"
          steps:
            - {id: call, kind: handoff, team: support, title: "Call: {{ steps.ask.score }}/10, arm {{ steps.unhappy.arm }}"}
            - {id: after_call, kind: handoff, team: support, title: "Follow up {{ steps.call.task_id }}"}
      else:
        - {id: done, kind: exit, goal: "{{ steps.call.task_id }}"}
    - {id: wrap_up, kind: handoff, team: support, title: "{{ TARGET }}"}
"""


def test_earlier_siblings_and_the_enclosing_step_are_earlier_for_nested_steps(tmp_path):
    path = write_config(tmp_path, BRANCHY.replace("{{ TARGET }}", "Wrap up {{ steps.unhappy.arm }}"))
    assert check(path) == []


@pytest.mark.parametrize("target", ["steps.call.task_id", "steps.done.x", "steps.wrap_up.x"])
def test_steps_inside_an_earlier_branch_arm_or_the_step_itself_are_not_earlier(tmp_path, target):
    path = write_config(tmp_path, BRANCHY.replace("TARGET", target))
    ref = target.rsplit(".", 1)[0]
    assert _lines(path) == [f"touchpoints.sale.steps[3].title: '{ref}' is not an earlier step"]


# --------------------------------------------------------------------------- sample context
def test_survey_emails_render_with_the_names_the_survey_step_adds(tmp_path):
    path = write_config(tmp_path, """\
        nps:
          description: Ask.
          trigger: {event: contract.signed}
          audience: customer
          steps:
            - {id: ask, kind: survey, question: nps, subject: "Hi {{ customer.first_name }}", template: survey}
        """)
    assert check(path) == []
    email = write_config(tmp_path / "email", WELCOME)
    (tmp_path / "email" / "templates" / "welcome.txt").write_text("{{ survey.text }}")
    assert _lines(email) == [("touchpoints.sale.steps[0].template: templates/welcome.txt "
                              "line 1: 'survey' is undefined")]


def test_handoff_task_emails_get_the_task_and_its_links(tmp_path):
    path = write_config(tmp_path, """\
        sale:
          description: Book.
          trigger: {event: contract.signed}
          audience: customer
          steps:
            - {id: book, kind: handoff, team: install, title: "Book {{ trigger.data.plan }}"}
        """)
    assert check(path) == []
    (tmp_path / "templates" / "_system" / "handoff.txt").write_text("{{ task.nonsense }}")
    assert _lines(path) == [("touchpoints.sale.steps[0].template: templates/_system/handoff.txt "
                             "line 1: 'dict object' has no attribute 'nonsense'")]


def test_a_count_trigger_gives_templates_its_category_count_and_history(tmp_path):
    path = write_config(tmp_path, """\
        recurring:
          description: Third ticket.
          trigger: {count: 3, event: ticket.opened, within: 30d, same: category}
          audience: customer
          steps:
            - {id: tell, kind: email, subject: "{{ trigger.data.count }} tickets about {{ trigger.data.category }}", template: history, category: service}
        """)
    assert check(path) == []


@pytest.mark.parametrize(("trigger", "audience", "uses", "ok"), [
    ('{date: "60d before contract_end"}', "customer", "trigger.data.fires_at", True),
    ("{inactivity: 30d}", "customer", "trigger.data.last_contact", True),
    ("{schedule: monthly}", '{segment: "true"}', "trigger.data.schedule", True),
    ("{schedule: monthly}", '{segment: "true"}', "trigger.data.plan", False),
])
def test_synthetic_triggers_render_with_their_documented_data(tmp_path, trigger, audience,
                                                               uses, ok):
    path = write_config(tmp_path, f"""\
        periodic:
          description: Periodic.
          trigger: {trigger}
          audience: {audience}
          steps:
            - {{id: note, kind: handoff, team: support, title: "{{{{ {uses} }}}}"}}
        """)
    expected = [] if ok else [("touchpoints.periodic.steps[0].title: 'dict object' has no "
                               "attribute 'plan'")]
    assert _lines(path) == expected


def test_an_unknown_trigger_event_does_not_cascade_into_template_errors(tmp_path):
    path = write_config(tmp_path, WELCOME.replace("contract.signed", "contract.signd")
                        .replace("Welcome, {{ customer.first_name }}", "{{ trigger.data.plan }}"))
    assert _lines(path) == ["touchpoints.sale.trigger.event: unknown event type 'contract.signd'"]


def test_a_broken_step_still_has_its_other_fields_and_nested_steps_checked(tmp_path):
    path = write_config(tmp_path, """\
        sale:
          description: Welcome.
          trigger: {event: contract.signed}
          audience: customer
          steps:
            - id: check
              kind: branch
              colour: red
              when:
                - if: "true"
                  steps:
                    - {id: inner, kind: notify, team: instal, subject: Hi, template: welcome}
            - {id: welcome, kind: email, subject: "{{ steps.check.arm }}", template: welcome, category: survey, extra: 1}
        """)
    assert _lines(path) == [
        "touchpoints.sale.steps[0].colour: unknown field 'colour'",
        "touchpoints.sale.steps[0].when[0].steps[0].team: unknown team 'instal'",
        "touchpoints.sale.steps[1].category: unknown category 'survey'",
        "touchpoints.sale.steps[1].extra: unknown field 'extra'",
    ]


# --------------------------------------------------------------------------- never raises
@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"# only a comment\n", "the file is empty"),
    (b"- just\n- a list\n", ("the file must be a mapping of sections (version, defaults, "
                            "categories, teams, events, touchpoints)")),
    (b"\xff\xfe\x00garbage\x80\x81", "not a UTF-8 text file"),
    (b"version: 2\n", None),
    (b"version: 1\ndefaults: 5\ntouchpoints: [1, 2]\n", None),
    (b"version: 1\ndefaults: {sender: a@b.c, postal_address: x}\ntouchpoints: {a: 1, b: {steps: 7}}\n", None),
    (b"version: 1\ntouchpoints: {a: {steps: [1, [2], {kind: 3}, {kind: branch, when: 5}]}}\n", None),
    (b"version: 1\n1: 2\n? [a]\n: b\n", None),
])
def test_bad_input_becomes_diagnostics_never_an_exception(tmp_path, content, message):
    path = tmp_path / "touchpoints.yaml"
    path.write_bytes(content)
    diagnostics = check(path)
    assert diagnostics
    assert not any("internal error" in d.message for d in diagnostics)
    if message is not None:
        assert [d.message for d in diagnostics] == [message]


def test_a_missing_file_and_a_directory_are_diagnostics(tmp_path):
    assert [d.message for d in check(tmp_path / "absent.yaml")] == ["file not found"]
    assert [d.message for d in check(tmp_path)] == ["is a directory, not a file"]
