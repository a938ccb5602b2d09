"""Event data contracts: the ``fields:`` of an event in the ``events:`` catalogue, and the one
validator every way in (API, CLI, dispatcher) uses."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flows.errors import EventDataError

_TYPE = re.compile(r"^(list\[(?P<item>[a-z]+)\]|(?P<plain>[a-z]+))$")
SCALARS = ("string", "integer", "number", "boolean", "date", "datetime", "object")


class FieldSpec(BaseModel):
    """One data field of an event."""

    model_config = ConfigDict(extra="forbid")
    type: str = Field(description="string, integer, number, boolean, date, datetime, object "
                                  "or list[<type>]")
    required: bool = True
    description: str | None = None

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        m = _TYPE.match(value or "")
        name = m and (m.group("item") or m.group("plain"))
        if not name or name not in SCALARS:
            raise ValueError(f"unknown field type {value!r}; use one of {', '.join(SCALARS)} "
                             "or list[<type>]")
        return value


def _coerce(kind: str, value: Any) -> Any:
    m = _TYPE.match(kind)
    if m.group("item"):
        if not isinstance(value, list):
            raise ValueError(f"expected a list of {m.group('item')}")
        return [_coerce(m.group("item"), v) for v in value]
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected a whole number")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        return value
    if kind == "object":
        if not isinstance(value, dict):
            raise ValueError("expected an object")
        return value
    if kind == "date":
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValueError("expected an ISO date, e.g. 2026-12-15") from None
    if kind == "datetime":
        try:
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValueError("expected an ISO date and time with offset, "
                             "e.g. 2026-11-23T18:00:00+00:00") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"unknown type {kind}")


def check_data(fields: dict[str, FieldSpec], data: dict | None) -> tuple[dict, dict[str, str]]:
    """Typed values and the problems, field by field. Undeclared fields pass through untyped."""
    data = dict(data or {})
    problems: dict[str, str] = {}
    for name, spec in fields.items():
        if data.get(name) is None:
            if spec.required:
                problems[name] = f"required ({spec.type}) but missing"
            continue
        try:
            data[name] = _coerce(spec.type, data[name])
        except ValueError as exc:
            problems[name] = f"{exc}, got {data[name]!r}"
    return data, problems


def validate_event_data(config, event_type: str, data: dict | None) -> dict:
    """``data`` with typed values, or :class:`EventDataError` naming each bad field. An event
    with no ``fields:`` declared has no contract and passes as sent."""
    spec = config.event_types().get(event_type)
    fields = getattr(spec, "fields", None) or {}
    typed, problems = check_data(fields, data)
    if problems:
        raise EventDataError(event_type, problems)
    return typed
