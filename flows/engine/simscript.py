"""The script of a simulation (`touchpoints simulate --event/--answer`), checked before
anything runs, and the moment a simulation starts."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flows import clock
from flows.durations import parse_duration
from flows.errors import TouchpointsError
from flows.store.tables import Customer

EVENT_HINT = """write TYPE@+OFFSET={json}, e.g. --event 'install.completed@+3d={"job_id": "JOB-1"}'"""
ANSWER_HINT = "write KEY=VALUE@+OFFSET, e.g. --answer 'nps=3@+2d' (KEY: a survey step id or nps/csat)"


@dataclass(frozen=True)
class Scripted:
    offset: timedelta
    kind: str                 # "event" | "answer"
    name: str                 # the event type, or the survey's step id / question
    data: dict[str, Any] = field(default_factory=dict)
    value: str = ""
    order: int = 0


def _offset(text: str, what: str, hint: str) -> timedelta:
    text = text.strip()
    if not text.startswith("+"):
        raise TouchpointsError(f"{what}: the time {text!r} must start with +", hint=hint)
    if text[1:].strip() in ("0", ""):
        return timedelta(0)
    try:
        return parse_duration(text[1:])
    except ValueError as exc:
        raise TouchpointsError(f"{what}: {exc}", hint=hint) from None


def parse_event(text: str, order: int = 0) -> Scripted:
    """``TYPE[@+OFFSET][={json}]``."""
    head, eq, body = text.partition("=")
    data: dict[str, Any] = {}
    if eq:
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise TouchpointsError(f"--event {text!r}: the data is not JSON ({exc.msg})",
                                   hint=EVENT_HINT) from None
        if not isinstance(data, dict):
            raise TouchpointsError(f"--event {text!r}: the data must be a JSON object", hint=EVENT_HINT)
    name, _, when = head.partition("@")
    if not name.strip():
        raise TouchpointsError(f"--event {text!r} names no event type", hint=EVENT_HINT)
    offset = _offset(when, f"--event {text!r}", EVENT_HINT) if when else timedelta(0)
    return Scripted(offset=offset, kind="event", name=name.strip(), data=data, order=order)


def parse_answer(text: str, order: int = 0) -> Scripted:
    """``KEY=VALUE[@+OFFSET]``."""
    key, eq, rest = text.partition("=")
    value, _, when = rest.partition("@")
    if not eq or not key.strip() or not value.strip():
        raise TouchpointsError(f"--answer {text!r} is not KEY=VALUE@+OFFSET", hint=ANSWER_HINT)
    offset = _offset(when, f"--answer {text!r}", ANSWER_HINT) if when else timedelta(0)
    return Scripted(offset=offset, kind="answer", name=key.strip(), value=value.strip(), order=order)



def default_start(engine, name: str, customer_id: str) -> datetime:
    """When the simulation starts: a date trigger's moment for the customer, else now."""
    tp = engine.touchpoint(name)
    if tp.trigger.kind != "date":
        return clock.now()
    from flows.store.customers import to_view

    with engine.store.read_session() as session:
        row = session.get(Customer, customer_id)
        if row is None:
            return clock.now()
        view = to_view(row)
    anchor = getattr(view, tp.trigger.date.field)
    if anchor is None:
        raise TouchpointsError(f"customer {customer_id} has no {tp.trigger.date.field}: "
                               f"{name}'s date trigger never fires for them",
                               hint="simulate another customer, or give --start")
    at = getattr(tp.trigger, "at", None) or time(9, 0)
    return tp.trigger.date.resolve(anchor, at, ZoneInfo(view.timezone))


def check_script(engine, name: str, script: list[Scripted]) -> None:
    """Every scripted event is a known type; every answer names a survey of the touch point."""
    from flows.config import iter_steps
    from flows.engine.dispatch import Dispatcher

    tp = engine.touchpoint(name)
    surveys = {s.id: s for s in iter_steps(tp.steps) if s.kind == "survey"}
    keys = set(surveys) | {s.question for s in surveys.values()}
    for item in script:
        if item.kind == "event":
            Dispatcher(engine, None).check_type(item.name)
        elif item.name not in keys:
            close = difflib.get_close_matches(item.name, sorted(keys), n=1)
            raise TouchpointsError(
                f"--answer {item.name}: {name} has no survey step or question {item.name!r}",
                hint=f"did you mean {close[0]!r}?" if close else
                (f"use one of: {', '.join(sorted(keys))}" if keys else f"{name} sends no survey"))
