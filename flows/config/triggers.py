"""What starts a touch point (its trigger) and whom it is for (its audience).

A trigger is written in exactly one of five forms, told apart by which key is present::

    {event: contract.signed, where: "event.data.plan != 'trial'"}
    {date: "90d before contract_end", at: "09:00"}
    {schedule: quarterly}                    # or a 5-field cron, "0 9 1 */3 *"
    {inactivity: 30d}
    {count: 3, event: ticket.opened, within: 30d, same: category}
"""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated, Any, Literal

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    WithJsonSchema,
    field_validator,
)

from flows.durations import Duration, RelativeTimeField
from flows.steps.base import EventRef, Expression

_HHMM = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def parse_local_time(value: Any) -> time:
    """``"08:00"`` → 08:00. Seconds and time zones are not part of the language."""
    if isinstance(value, time):
        return value
    match = _HHMM.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a time of day; write HH:MM, e.g. \"09:00\"")
    return time(int(match[1]), int(match[2]))


LocalTime = Annotated[
    time,
    BeforeValidator(parse_local_time),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": _HHMM.pattern,
                    "description": "A local time of day, HH:MM.", "examples": ["09:00"]}),
]

#: the named schedules and the cron they stand for (09:00 UTC)
NAMED_SCHEDULES = {
    "daily": "0 9 * * *",
    "weekly": "0 9 * * 1",
    "monthly": "0 9 1 * *",
    "quarterly": "0 9 1 */3 *",
    "yearly": "0 9 1 1 *",
}
TRIGGER_FORMS = ("event", "date", "schedule", "inactivity", "count")
_CRON_ANCHOR = datetime(2026, 1, 1)


class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventTrigger(_Trigger):
    """Fires when an event of type ``event`` arrives and ``where`` (if given) is true."""

    event: EventRef
    where: Expression | None = None

    @property
    def kind(self) -> str:
        return "event"


class DateTrigger(_Trigger):
    """Fires once per customer per contract cycle, at ``at`` local time on the date."""

    date: RelativeTimeField
    at: LocalTime = time(9, 0)

    @property
    def kind(self) -> str:
        return "date"


class ScheduleTrigger(_Trigger):
    """Fires on a schedule: daily, weekly, monthly, quarterly, yearly, or a 5-field cron."""

    schedule: str = Field(description="daily, weekly, monthly, quarterly, yearly, or a cron "
                                      "such as '0 9 1 */3 *'.")

    @field_validator("schedule")
    @classmethod
    def _valid(cls, value: str) -> str:
        value = value.strip()
        if value in NAMED_SCHEDULES:
            return value
        if len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a schedule; write one of "
                             f"{', '.join(NAMED_SCHEDULES)} or a 5-field cron, e.g. '0 9 1 */3 *'")
        try:
            CronSim(value, _CRON_ANCHOR)
        except (CronSimError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a valid cron expression: {exc}") from None
        return value

    @property
    def kind(self) -> str:
        return "schedule"

    @property
    def cron(self) -> str:
        return NAMED_SCHEDULES.get(self.schedule, self.schedule)


class InactivityTrigger(_Trigger):
    """Fires when there has been no contact with a customer for ``inactivity``."""

    inactivity: Duration

    @property
    def kind(self) -> str:
        return "inactivity"


class CountTrigger(_Trigger):
    """Fires on the ``count``-th ``event`` within ``within``, grouped by ``event.data.<same>``."""

    count: int = Field(ge=2, le=1000)
    event: EventRef
    within: Duration
    same: str | None = Field(None, description="Group by this key of the event data.")

    @property
    def kind(self) -> str:
        return "count"


def trigger_form(value: Any) -> str | None:
    """Which form a trigger is written in; None when it is none or several of them."""
    if isinstance(value, _Trigger):
        return value.kind
    if not isinstance(value, dict):
        return None
    present = [form for form in TRIGGER_FORMS[1:] if form in value]
    if len(present) == 1:
        return present[0]
    return "event" if not present and "event" in value else None


Trigger = Annotated[
    Annotated[EventTrigger, Tag("event")] | Annotated[DateTrigger, Tag("date")] | Annotated[ScheduleTrigger, Tag("schedule")] | Annotated[InactivityTrigger, Tag("inactivity")] | Annotated[CountTrigger, Tag("count")],
    Discriminator(
        trigger_form, custom_error_type="trigger_form",
        custom_error_message="a trigger has exactly one form: event, date, schedule, inactivity "
                             "or count (count goes with event)"),
]


class Segment(BaseModel):
    """Every customer for whom ``segment`` is true."""

    model_config = ConfigDict(extra="forbid")
    segment: Expression


def _audience_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "customer"
    if isinstance(value, (dict, Segment)):
        return "segment"
    return None


Audience = Annotated[
    Annotated[Literal["customer"], Tag("customer")] | Annotated[Segment, Tag("segment")],
    Discriminator(_audience_form, custom_error_type="audience_form",
                  custom_error_message="audience is 'customer' or {segment: <expression>}"),
]

EntryRule = Literal["once_per_cycle", "once", "after_end", "every_time"]


class Entry(BaseModel):
    """When a trigger may start a journey again (docs/architecture.md, "Entry rules")."""

    model_config = ConfigDict(extra="forbid")
    rule: EntryRule | None = Field(
        None, description="Default: once_per_cycle for a customer audience, every_time for a "
                          "segment.")
    key: Expression | None = None

