"""Event data contracts: the ``fields:`` of an event in the ``events:`` catalogue, and the one
validator every way in (API, CLI, dispatcher) uses.

* :func:`validate_event_data` refuses data that breaks the contract (:class:`EventDataError`,
  naming each bad field with what was expected);
* :func:`typed_event` gives templates and expressions the typed values (a ``datetime`` field
  is a datetime, a ``date`` a date); the stored event JSON stays as it was sent;
* :func:`required_only` is an example cut down to its required fields (what `touchpoints
  check` renders with, so an unguarded optional field is caught);
* :func:`data_schema` is the JSON Schema of one event's data.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows.errors import EventDataError

_TYPE = re.compile(r"^(list\[(?P<item>[a-z]+)\]|(?P<plain>[a-z]+))$")
SCALARS = ("string", "integer", "number", "boolean", "date", "datetime", "object")

#: the plain JSON types: the Python types a value may have, and what to say when it has not
_PLAIN: dict[str, tuple[tuple[type, ...], str]] = {
    "string": ((str,), "expected a string"),
    "boolean": ((bool,), "expected true or false"),
    "integer": ((int,), "expected a whole number"),
    "number": ((int, float), "expected a number"),
    "object": ((dict,), "expected an object"),
}
_JSON_TYPES = {"string": "string", "boolean": "boolean", "integer": "integer",
               "number": "number", "object": "object"}
_EXAMPLES = {"date": "2026-12-15", "datetime": "2026-11-23T18:00:00+00:00"}


class FieldSpec(BaseModel):
    """One data field of an event."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(description="string, integer, number, boolean, date, datetime, object "
                                  "or list[<type>]")
    required: bool = Field(True, description="Refuse the event when the field is missing.")
    description: str | None = Field(None, description="What the field means, in plain words.")

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        m = _TYPE.match(value or "")
        name = m and (m.group("item") or m.group("plain"))
        if not name or name not in SCALARS:
            raise ValueError(f"unknown field type {value!r}; use one of {', '.join(SCALARS)} "
                             "or list[<type>]")
        return value

    @property
    def words(self) -> str:
        """The type in words: ``list[string]`` is "a list of string" (no brackets, which a
        terminal's markup would take for a style)."""
        if self.item:
            return f"a list of {self.item}"
        return f"{'an' if self.type[0] in 'aeiou' else 'a'} {self.type}"

    @property
    def item(self) -> str | None:
        """The type of the items of a ``list[<type>]`` field, else None."""
        return _TYPE.match(self.type).group("item")


def _coerce(kind: str, value: Any) -> Any:
    m = _TYPE.match(kind)
    if m.group("item"):
        if not isinstance(value, list):
            raise ValueError(f"expected a list of {m.group('item')}")
        return [_coerce(m.group("item"), v) for v in value]
    if kind in _PLAIN:
        types, expected = _PLAIN[kind]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(expected)
        return value
    if kind in ("date", "datetime"):
        return _moment(kind, value)
    raise ValueError(f"unknown type {kind}")


def _moment(kind: str, value: Any) -> date | datetime:
    """An ISO date or date and time (one without an offset is taken as UTC)."""
    wanted = datetime if kind == "datetime" else date
    if isinstance(value, wanted) and (kind == "datetime" or not isinstance(value, datetime)):
        parsed = value
    else:
        try:
            parsed = wanted.fromisoformat(value)
        except (TypeError, ValueError):
            what = "an ISO date and time with offset" if kind == "datetime" else "an ISO date"
            raise ValueError(f"expected {what}, e.g. {_EXAMPLES[kind]}") from None
    if kind == "datetime" and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def check_data(fields: dict[str, FieldSpec], data: dict | None) -> tuple[dict, dict[str, str]]:
    """Typed values and the problems, field by field. Undeclared fields pass through untyped;
    a field sent as null counts as missing."""
    data = dict(data or {})
    problems: dict[str, str] = {}
    for name, spec in fields.items():
        if data.get(name) is None:
            if spec.required:
                problems[name] = f"required ({spec.words}) but missing"
            continue
        try:
            data[name] = _coerce(spec.type, data[name])
        except ValueError as exc:
            problems[name] = f"{exc}, got {data[name]!r}"
    return data, problems


def fields_of(config, event_type: str) -> dict[str, FieldSpec]:
    """The declared fields of an event type ({} when it has no contract)."""
    catalogue = getattr(config, "event_types", None)
    spec = catalogue().get(event_type) if callable(catalogue) else None
    return dict(getattr(spec, "fields", None) or {})


def validate_event_data(config, event_type: str, data: dict | None) -> dict:
    """``data`` with typed values, or :class:`EventDataError` naming each bad field. An event
    with no ``fields:`` declared has no contract and passes as sent."""
    typed, problems = check_data(fields_of(config, event_type), data)
    if problems:
        raise EventDataError(event_type, problems)
    return typed


def typed_event(config, event: dict | None) -> dict | None:
    """The event with its declared fields typed, for templates and expressions. Lenient: a
    value that does not fit (an event stored before its contract) stays as it was."""
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict) or config is None:
        return event
    fields = fields_of(config, str(event.get("type")))
    if not fields:
        return event
    data = dict(event["data"])
    for name, spec in fields.items():
        if data.get(name) is not None:
            try:
                data[name] = _coerce(spec.type, data[name])
            except ValueError:
                pass
    return {**event, "data": data}


def typed_results(config, results: dict | None) -> dict:
    """Step results whose ``event`` (what a wait_for received) is typed like the trigger."""
    out = dict(results or {})
    for step_id, result in out.items():
        if isinstance(result, dict) and isinstance(result.get("event"), dict):
            out[step_id] = {**result, "event": typed_event(config, result["event"])}
    return out


def required_only(fields: dict[str, FieldSpec], example: dict[str, Any]) -> dict[str, Any]:
    """The example without its optional fields (unchanged when there is no contract)."""
    if not fields:
        return dict(example)
    return {k: v for k, v in example.items() if k not in fields or fields[k].required}


def _type_schema(kind: str) -> dict[str, Any]:
    m = _TYPE.match(kind)
    if m.group("item"):
        return {"type": "array", "items": _type_schema(m.group("item"))}
    if kind in _JSON_TYPES:
        return {"type": _JSON_TYPES[kind]}
    return {"type": "string", "format": "date-time" if kind == "datetime" else "date"}


def data_schema(fields: dict[str, FieldSpec], *, title: str | None = None,
                description: str | None = None) -> dict[str, Any]:
    """The JSON Schema of an event's data under ``fields``; other fields are allowed."""
    properties = {}
    for name, spec in fields.items():
        prop = _type_schema(spec.type)
        if not spec.required:  # null is taken as left out
            prop["type"] = [prop["type"], "null"]
        if spec.description:
            prop["description"] = spec.description
        properties[name] = prop
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": True}
    required = [name for name, spec in fields.items() if spec.required]
    if required:
        schema["required"] = required
    if title:
        schema["title"] = title
    if description:
        schema["description"] = " ".join(description.split())
    return schema
