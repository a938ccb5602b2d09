from datetime import date, datetime

import pytest

from flows.config.contracts import FieldSpec, check_data
from flows.config.models import EventType
from flows.errors import EventDataError


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
