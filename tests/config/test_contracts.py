from datetime import date, datetime

import pytest

from flows.config import check
from flows.config.contracts import FieldSpec, check_data, data_schema, required_only, typed_event
from flows.config.models import EventType
from flows.errors import EventDataError
from tests.config.support import HEADER, write_config

FIELDS = {"eta": FieldSpec(type="datetime"), "regions": FieldSpec(type="list[string]"),
          "on": FieldSpec(type="date", required=False)}


def test_valid_data_arrives_typed():
    typed, problems = check_data(FIELDS, {"eta": "2026-11-23T18:00:00+00:00", "regions": ["n"],
                                          "on": "2026-12-01"})
    assert problems == {}
    assert isinstance(typed["eta"], datetime) and typed["eta"].tzinfo
    assert typed["on"] == date(2026, 12, 1)


def test_each_bad_field_is_named_with_what_was_expected():
    _, problems = check_data(FIELDS, {"eta": "2 hours"})
    assert set(problems) == {"eta", "regions"}
    assert "ISO date and time" in problems["eta"] and "missing" in problems["regions"]


def test_an_example_must_satisfy_its_contract():
    with pytest.raises(ValueError, match="example does not satisfy"):
        EventType(description="x", example={"eta": "soon"}, fields={"eta": {"type": "datetime"}})


def test_unknown_field_type_is_refused():
    with pytest.raises(ValueError, match="unknown field type"):
        FieldSpec(type="float")


def test_event_data_error_lists_fields():
    err = EventDataError("outage.declared", {"eta": "expected a datetime"})
    assert "eta: expected a datetime" in str(err)


# ---------------------------------------------------------------------- `touchpoints check`

CONTRACT_HEADER = HEADER.replace("""  outage.declared:
    description: The NOC declares an outage.
    example: {outage_id: OUT-1, regions: [north], eta: "2026-11-23T18:00:00+00:00"}
""", """  outage.declared:
    description: The NOC declares an outage.
    fields:
      regions: {type: "list[string]"}
      outage_id: {type: string, required: false}
      eta: {type: datetime, required: false}
      resolved: {type: boolean, required: false}
    example: {outage_id: OUT-1, regions: [north], eta: "2026-11-23T18:00:00+00:00"}
""")
assert CONTRACT_HEADER != HEADER


def _outage(step: str, *, segment: str = "customer.region in event.data.regions") -> str:
    return f"""\
outage:
  description: Tell customers in the regions.
  trigger: {{event: outage.declared}}
  audience: {{segment: "{segment}"}}
  steps:
    - {step}
"""


def _problems(tmp_path, touchpoints: str, templates: dict[str, str] | None = None) -> list:
    path = write_config(tmp_path, touchpoints, header=CONTRACT_HEADER)
    for name, text in (templates or {}).items():
        (tmp_path / "templates" / name).write_text(text, encoding="utf-8")
    return [(d.path, d.line, d.message, d.hint) for d in check(path)]


def test_an_unguarded_optional_field_in_a_template_is_an_error_with_its_line(tmp_path):
    template = "Hello\n{{ customer.first_name }}\nBack by {{ trigger.data.eta | localtime }}\n"
    [(path, _, message, hint)] = _problems(
        tmp_path, _outage("{id: tell, kind: email, subject: Down, template: eta_note, "
                          "category: service}"),
        {"eta_note.txt": template, "eta_note.html": "<p>Sorry</p>\n"})
    assert path == "touchpoints.outage.steps[0].template"
    assert message.startswith("templates/eta_note.txt line 3: ")
    assert "data.eta" in message and "optional in outage.declared" in message
    assert "is defined" in hint and "required: true" in hint


def test_a_guarded_optional_field_passes(tmp_path):
    template = "{% if trigger.data.eta is defined %}by {{ trigger.data.eta | localtime }}{% endif %}\n"
    assert _problems(tmp_path, _outage("{id: tell, kind: email, subject: Down, template: "
                                       "eta_note, category: service}"),
                     {"eta_note.txt": template, "eta_note.html": "<p>x</p>\n"}) == []


def test_an_unguarded_optional_field_in_an_inline_text_is_an_error_at_its_field(tmp_path):
    [(path, _, message, _)] = _problems(tmp_path, _outage(
        '{id: tell_noc, kind: handoff, team: install, title: "Outage {{ trigger.data.outage_id }}"}'))
    assert path == "touchpoints.outage.steps[0].title"
    assert "data.outage_id" in message and "optional" in message


def test_a_field_the_event_does_not_declare_is_an_error_with_did_you_mean(tmp_path):
    [(path, _, message, hint)] = _problems(tmp_path, _outage(
        '{id: tell_noc, kind: handoff, team: install, title: "{{ trigger.data.regoins | join }}"}'))
    assert path == "touchpoints.outage.steps[0].title"
    assert message == "trigger.data.regoins is not a field of outage.declared"
    assert hint == "did you mean 'regions'?"


def test_an_expression_using_an_undeclared_field_is_an_error(tmp_path):
    [(path, _, message, _)] = _problems(
        tmp_path, _outage("{id: done, kind: exit, goal: Told}",
                          segment="customer.region in event.data.areas"))
    assert path == "touchpoints.outage.audience.segment"
    assert message == "event.data.areas is not a field of outage.declared"


def test_an_expression_is_evaluated_with_only_the_required_fields(tmp_path):
    [(path, _, message, _)] = _problems(
        tmp_path, _outage("{id: done, kind: exit, goal: Told}",
                          segment="customer.region in event.data.regions and "
                                  "event.data.outage_id.startswith('OUT')"))
    assert path == "touchpoints.outage.audience.segment"
    assert "data.outage_id" in message and "optional" in message


def test_a_field_compared_with_a_constant_of_another_type_is_an_error(tmp_path):
    [(path, _, message, _)] = _problems(
        tmp_path, _outage("{id: done, kind: exit, goal: Told}",
                          segment="event.data.resolved == 'yes'"))
    assert path == "touchpoints.outage.audience.segment"
    assert message == "event.data.resolved is a boolean (outage.declared), so it never equals 'yes'"


def test_an_example_field_the_contract_does_not_declare_is_an_error(tmp_path):
    header = CONTRACT_HEADER.replace('example: {outage_id: OUT-1, regions: [north], eta:',
                                     'example: {outage_id: OUT-1, cause: cut, regions: [north], eta:')
    path = write_config(tmp_path, _outage("{id: done, kind: exit, goal: Told}"), header=header)
    [diagnostic] = check(path)
    assert diagnostic.path == "events['outage.declared'].example.cause"
    assert "not one of the fields" in diagnostic.message


def test_an_example_that_breaks_its_contract_is_a_check_error(tmp_path):
    header = CONTRACT_HEADER.replace('eta: "2026-11-23T18:00:00+00:00"}', 'eta: "2 hours"}')
    path = write_config(tmp_path, _outage("{id: done, kind: exit, goal: Told}"), header=header)
    messages = [d.message for d in check(path)]
    assert any("example does not satisfy" in m and "eta" in m for m in messages), messages


def test_the_shipped_templates_satisfy_the_shipped_contracts():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    assert [d.format() for d in check(repo / "touchpoints.yaml")] == []


# ---------------------------------------------------------------------- typed values
def test_typed_event_gives_datetimes_and_dates_and_leaves_the_rest(tmp_path):
    class Config:
        def event_types(self):
            return {"x.y": EventType(description="x", fields={
                "at": {"type": "datetime"}, "on": {"type": "date"}, "n": {"type": "integer"}},
                example={"at": "2026-01-01T00:00:00Z", "on": "2026-01-01", "n": 1})}

    event = {"type": "x.y", "data": {"at": "2026-11-23T18:00:00Z", "on": "2026-12-01",
                                     "n": "not a number", "other": "kept"}}
    typed = typed_event(Config(), event)
    assert typed["data"]["at"] == datetime(2026, 11, 23, 18, tzinfo=typed["data"]["at"].tzinfo)
    assert typed["data"]["on"] == date(2026, 12, 1)
    assert typed["data"]["n"] == "not a number" and typed["data"]["other"] == "kept"
    assert event["data"]["at"] == "2026-11-23T18:00:00Z"  # the event itself is not changed


def test_required_only_drops_the_optional_fields_and_keeps_undeclared_ones():
    example = {"eta": "x", "regions": ["n"], "on": "2026-12-01", "extra": 1}
    assert required_only(FIELDS, example) == {"eta": "x", "regions": ["n"], "extra": 1}


def test_the_data_schema_marks_required_fields_and_lets_optional_ones_be_null():
    schema = data_schema(FIELDS, title="t")
    assert schema["required"] == ["eta", "regions"]
    assert schema["properties"]["on"] == {"type": ["string", "null"], "format": "date"}
    assert schema["properties"]["regions"] == {"type": "array", "items": {"type": "string"}}


def test_values_arrive_typed_in_templates_and_expressions_at_run_time():
    from pathlib import Path

    from flows import clock
    from flows.config import load_config
    from flows.engine.context import build_context
    from flows.templating import evaluate, render_text

    config = load_config(Path(__file__).resolve().parents[2] / "touchpoints.yaml")
    trigger = {"id": "e-1", "type": "invoice.issued",
               "data": {"first": True, "due_date": "2026-12-15",
                        "issued_on": "2026-12-01"}}
    received = {"id": "e-2", "type": "payment.failed",
                "data": {"retry_on": "2026-12-22", "amount": 51.17}}
    ctx = build_context(config=config, customer=None, event=None, trigger=trigger,
                        results={"await_payment_problem": {"outcome": "event",
                                                           "event": received}},
                        journey_id="j-1", touchpoint="billing", now=clock.now())
    assert render_text("{{ trigger.data.due_date.day }} {{ trigger.data.due_date.year }}",
                       ctx) == "15 2026"
    assert evaluate("(trigger.data.due_date - trigger.data.issued_on).days", ctx) == 14
    assert evaluate("steps.await_payment_problem.event.data.retry_on.isoweekday()", ctx) == 2
    assert trigger["data"]["due_date"] == "2026-12-15"  # what was stored is not changed


def test_a_field_with_an_unknown_type_is_one_error_at_its_type_and_no_cascade(tmp_path):
    header = CONTRACT_HEADER.replace('eta: {type: datetime, required: false}',
                                     'eta: {type: float, required: false}')
    path = write_config(tmp_path, _outage(
        '{id: tell_noc, kind: handoff, team: install, '
        'title: "{{ trigger.data.eta | default(\'soon\') }}"}'), header=header)
    [diagnostic] = check(path)
    assert diagnostic.path == "events['outage.declared'].fields.eta.type"
    assert "unknown field type 'float'" in diagnostic.message
