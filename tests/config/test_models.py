"""The models of touchpoints.yaml, used directly (as the engine does)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from flows.config import ConfigFile, Defaults, SendWindow, TouchPoint, iter_steps
from flows.config.triggers import NAMED_SCHEDULES
from flows.errors import NotFoundError
from flows.steps.base import StepConfig

LONDON = ZoneInfo("Europe/London")
KOLKATA = ZoneInfo("Asia/Kolkata")
WEEKDAYS = SendWindow(start="08:00", end="20:00", days=["mon", "tue", "wed", "thu", "fri"])


def _tp(**overrides) -> dict:
    data = {"description": "Welcome.", "trigger": {"event": "contract.signed"},
            "audience": "customer",
            "steps": [{"id": "welcome", "kind": "email", "subject": "Hi", "template": "welcome",
                       "category": "service"}]}
    return {**data, **overrides}


def _config(**touchpoints) -> ConfigFile:
    return ConfigFile.model_validate({
        "version": 1, "defaults": {"sender": "Northwind Fibre <hello@northwind.example>",
                                   "postal_address": "1 Harbour Road"},
        "touchpoints": touchpoints or {"sale": _tp()}})


# --------------------------------------------------------------------------- send window
def test_a_moment_inside_the_send_window_is_returned_unchanged():
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # Tuesday 10:00 London
    assert WEEKDAYS.next_open(moment, LONDON) is moment


def test_a_moment_before_the_window_opens_moves_to_that_mornings_opening():
    moment = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
    assert WEEKDAYS.next_open(moment, LONDON) == datetime(2026, 11, 24, 8, 0, tzinfo=LONDON)


def test_a_moment_after_friday_closing_moves_to_monday_morning():
    moment = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)  # Friday 20:00, just closed
    opening = WEEKDAYS.next_open(moment, LONDON)
    assert opening == datetime(2026, 11, 30, 8, 0, tzinfo=LONDON)
    assert opening.strftime("%a") == "Mon"


def test_the_window_is_read_in_the_customers_own_timezone():
    moment = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 21:30 in Kolkata, 16:00 London
    assert WEEKDAYS.next_open(moment, LONDON) is moment
    assert WEEKDAYS.next_open(moment, KOLKATA) == datetime(2026, 11, 25, 8, 0, tzinfo=KOLKATA)


def test_a_naive_moment_is_refused():
    with pytest.raises(ValueError, match="aware"):
        WEEKDAYS.next_open(datetime(2026, 11, 24, 10, 0), LONDON)


def test_a_window_that_ends_before_it_starts_is_invalid():
    with pytest.raises(ValidationError, match="ends"):
        SendWindow(start="20:00", end="08:00")


# --------------------------------------------------------------------------- defaults
def test_the_company_name_is_the_display_name_of_the_sender():
    d = Defaults(sender="Northwind Fibre <hello@northwind.example>", postal_address="x")
    assert d.company_name == "Northwind Fibre"
    assert Defaults(sender="hello@northwind.example", postal_address="x").company_name == \
        "northwind.example"


def test_a_sender_with_a_line_break_is_refused():
    with pytest.raises(ValidationError, match="one line"):
        Defaults(sender="Evil\nBcc: x@example.com <a@example.com>", postal_address="x")


def test_an_unknown_timezone_is_refused_with_a_suggestion():
    with pytest.raises(ValidationError, match="did you mean 'Europe/London'"):
        Defaults(sender="a@example.com", postal_address="x", timezone="Europe/Lodnon")


# --------------------------------------------------------------------------- triggers
@pytest.mark.parametrize(("trigger", "kind"), [
    ({"event": "contract.signed", "where": "event.data.plan != 'trial'"}, "event"),
    ({"date": "90d before contract_end", "at": "10:00"}, "date"),
    ({"schedule": "quarterly"}, "schedule"),
    ({"inactivity": "30d"}, "inactivity"),
    ({"count": 3, "event": "ticket.opened", "within": "30d", "same": "category"}, "count"),
])
def test_each_trigger_form_is_recognised_by_its_key(trigger, kind):
    audience = {"segment": "true"} if kind == "schedule" else "customer"
    tp = _config(x=_tp(trigger=trigger, audience=audience)).touchpoint("x")
    assert tp.trigger.kind == kind


def test_a_date_trigger_reads_its_offset_and_time():
    trigger = _config(x=_tp(trigger={"date": "90d before contract_end", "at": "10:30"})) \
        .touchpoint("x").trigger
    assert (trigger.date.offset, trigger.date.direction, trigger.date.field, trigger.at) == \
        (timedelta(days=90), "before", "contract_end", time(10, 30))


def test_a_named_schedule_has_a_cron_and_a_cron_schedule_is_its_own():
    segment = {"segment": "true"}
    named = _config(x=_tp(trigger={"schedule": "quarterly"}, audience=segment)).touchpoint("x")
    cron = _config(x=_tp(trigger={"schedule": "30 8 * * 1-5"}, audience=segment)).touchpoint("x")
    assert named.trigger.cron == NAMED_SCHEDULES["quarterly"] == "0 9 1 */3 *"
    assert cron.trigger.cron == "30 8 * * 1-5"


def test_an_invalid_cron_is_refused():
    with pytest.raises(ValidationError, match="not a valid cron"):
        _config(x=_tp(trigger={"schedule": "0 25 * * *"}, audience={"segment": "true"}))


def test_a_trigger_in_two_forms_is_refused_naming_the_forms():
    with pytest.raises(ValidationError, match="event, date, schedule, inactivity or count"):
        _config(x=_tp(trigger={"inactivity": "30d", "schedule": "daily"}))


# --------------------------------------------------------------------------- touch points
def test_the_entry_rule_defaults_by_audience():
    config = _config(one=_tp(), many=_tp(audience={"segment": "customer.region == 'north'"}),
                     keyed=_tp(entry={"rule": "once", "key": "event.data.plan"}))
    assert config.touchpoint("one").entry.rule == "once_per_cycle"
    assert config.touchpoint("many").entry.rule == "every_time"
    assert config.touchpoint("many").audience.segment == "customer.region == 'north'"
    assert config.touchpoint("keyed").entry.key == "event.data.plan"


def test_touch_points_are_named_after_their_key():
    config = _config(**{"check-in": _tp()})
    assert config.touchpoint("check-in").name == "check-in"


def test_an_unknown_touch_point_is_not_found_with_a_suggestion():
    with pytest.raises(NotFoundError) as caught:
        _config(renewal=_tp()).touchpoint("renewl")
    assert caught.value.hint == "did you mean 'renewal'?"


def test_a_name_field_cannot_be_set_in_the_file():
    with pytest.raises(ValidationError, match="name"):
        TouchPoint.model_validate({**_tp(), "name": "other"})


def test_steps_are_parsed_into_their_kinds_config_recursively():
    steps = [
        {"id": "welcome", "kind": "email", "subject": "Hi", "template": "w", "category": "s"},
        {"id": "check", "kind": "branch", "when": [{"if": "true", "steps": [
            {"id": "inner", "kind": "branch", "when": [{"if": "true", "steps": [
                {"id": "deep", "kind": "exit", "goal": "done"}]}]}]}],
         "else": [{"id": "other", "kind": "wait", "for": "3d"}]},
    ]
    tp = _config(x=_tp(steps=steps)).touchpoint("x")
    found = list(iter_steps(tp.steps))
    assert [s.id for s in found] == ["welcome", "check", "inner", "deep", "other"]
    assert [type(s).__name__ for s in found] == ["EmailStep", "BranchStep", "BranchStep",
                                                  "ExitStep", "WaitStep"]
    assert all(isinstance(s, StepConfig) for s in found)
    assert found[4].for_ == timedelta(days=3)


def test_a_bad_nested_step_fails_validation_at_its_own_location():
    steps = [{"id": "check", "kind": "branch", "when": [{"if": "true", "steps": [
        {"id": "deep", "kind": "exitt"}]}]}]
    with pytest.raises(ValidationError) as caught:
        _config(x=_tp(steps=steps))
    [error] = caught.value.errors()
    assert error["loc"] == ("touchpoints", "x", "steps", 0, "when", 0, "steps", 0, "kind")
    assert error["msg"] == "unknown step kind 'exitt'"


def test_the_engines_own_events_are_always_in_the_catalogue():
    config = _config()
    catalogue = config.event_types()
    assert {"survey.answered", "task.completed", "task.acknowledged"} <= set(catalogue)
    assert {"survey_id", "journey_id", "step_id", "score", "comment"} <= \
        set(catalogue["survey.answered"].example)
    assert {"task_id", "outcome", "completed_by"} <= set(catalogue["task.completed"].example)
    assert "acknowledged_by" in catalogue["task.acknowledged"].example


def test_a_declared_engine_event_keeps_its_own_example_and_the_built_in_fields():
    config = ConfigFile.model_validate({
        "version": 1, "defaults": {"sender": "a@example.com", "postal_address": "x"},
        "events": {"survey.answered": {"description": "Ours.",
                                       "example": {"survey_id": "s-1", "score": 3}}}})
    survey = config.event_types()["survey.answered"]
    assert survey.example == {"survey_id": "s-1", "score": 3}
    assert survey.description == "Ours."
    assert survey.fields["score"].type == "integer" and survey.fields["survey_id"].required


def test_an_escalation_level_may_start_as_soon_as_the_task_is_overdue():
    team = {"email": "t@example.com", "sla": "1d",
            "escalation": [{"after": "0h", "to": "l@example.com"},
                           {"after": "1d", "to": "d@example.com"}]}
    config = ConfigFile.model_validate({
        "version": 1, "defaults": {"sender": "a@example.com", "postal_address": "x"},
        "teams": {"install": team}})
    assert [level.after for level in config.teams["install"].escalation] == \
        [timedelta(0), timedelta(days=1)]
    assert config.teams["install"].sla == timedelta(days=1)
