"""The models of touchpoints.yaml (the language is described in docs/architecture.md).

Every model forbids unknown keys: a misspelt field is an error, never silently ignored. Steps
are parsed through the step registry (:mod:`flows.config.parsing`), so this module knows no
step kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from flows.config.diagnostics import did_you_mean, one_of
from flows.config.eventtypes import (
    ENGINE_EVENTS,
    EventType,
    engine_event_problems,
    merged_event,
)
from flows.config.parsing import parse_steps
from flows.config.policy import ContactRule, Share, policy_problems
from flows.config.triggers import (
    Audience,
    CountTrigger,
    DateTrigger,
    Entry,
    EventTrigger,
    InactivityTrigger,
    LocalTime,
    ScheduleTrigger,
    Segment,
    Trigger,
)
from flows.durations import Duration
from flows.errors import NotFoundError
from flows.steps.base import EventRef, Expression, Marker, StepConfig

__all__ = [
    "DEFER_STEPS",
    "ENGINE_EVENTS",
    "Audience",
    "Category",
    "ConfigFile",
    "ContactRule",
    "CountTrigger",
    "DateTrigger",
    "Defaults",
    "Entry",
    "EscalationLevel",
    "EventTrigger",
    "EventType",
    "ExitWhen",
    "InactivityTrigger",
    "LocalTime",
    "ScheduleTrigger",
    "Segment",
    "SendWindow",
    "Team",
    "TouchPoint",
    "Trigger",
    "iter_steps",
]

#: validation context flag: leave ``steps`` empty (the checker parses them itself, leniently)
DEFER_STEPS = "defer_steps"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[^@\s<>\"(),;:]+$")
EmailAddress = Annotated[str, Field(pattern=_ADDRESS.pattern, description="An email address.")]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9\-]*$", max_length=64,
                            description="lowercase letters, digits and hyphens, e.g. check-in")]
CategoryName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", max_length=64,
                                    description="lowercase letters, digits, _ and -")]
EventName = Annotated[str, Field(pattern=r"^[a-z0-9_\-]+(\.[a-z0-9_\-]+)*$", max_length=100,
                                 description="lowercase words joined by dots, e.g. "
                                             "contract.signed")]


# --------------------------------------------------------------------------- defaults
def _mailbox(value: Any) -> str:
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise ValueError("write the sender on one line, e.g. \"Northwind <hello@northwind.example>\"")
    _, address = parseaddr(value)
    if not _ADDRESS.match(address or ""):
        raise ValueError(f"{value!r} is not an email address; write e.g. "
                         "\"Northwind Fibre <hello@northwind.example>\"")
    return value.strip()


def _zone(value: Any) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        close = did_you_mean(value, available_timezones())
        raise ValueError(f"unknown timezone {value!r}" + (f" ({close})" if close else "") +
                         "; use an IANA name such as Europe/London") from None
    return value


Mailbox = Annotated[str, BeforeValidator(_mailbox),
                    WithJsonSchema({"type": "string", "description": "Name <address> or address."})]
TimeZoneName = Annotated[str, BeforeValidator(_zone),
                         WithJsonSchema({"type": "string", "description": "An IANA timezone."})]

class SendWindow(BaseModel):
    """When non-transactional mail may go out, in the customer's own timezone."""

    model_config = ConfigDict(extra="forbid")
    start: LocalTime
    end: LocalTime
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if self.end <= self.start:
            raise ValueError(f"the send window ends ({self.end:%H:%M}) before it starts "
                             f"({self.start:%H:%M})")
        return self

    def next_open(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """``moment`` if it is inside the window in ``tz``, else the window's next opening."""
        if moment.tzinfo is None:
            raise ValueError("next_open needs an aware datetime")
        local = moment.astimezone(tz)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            if WEEKDAYS[day.weekday()] not in self.days:
                continue
            opens = datetime.combine(day, self.start, tzinfo=tz)
            closes = datetime.combine(day, self.end, tzinfo=tz)
            if _utc(opens) <= _utc(moment) < _utc(closes):
                return moment
            if _utc(opens) > _utc(moment):
                return opens
        raise AssertionError("a send window with days always opens within a week")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sender: Mailbox
    reply_to: EmailAddress | None = None
    postal_address: str = Field(min_length=1, description="Printed in the footer of every email.")
    timezone: TimeZoneName = "UTC"
    send_window: SendWindow | None = None
    operations: EmailAddress | None = Field(
        None, description="Where failure reports go: at most one email per touch point per "
                          "hour, with the count of members that failed since the last one.")
    contact_policy: list[ContactRule] = Field(
        default_factory=list,
        description="Caps on the non-transactional email one customer gets across every "
                    "touch point, e.g. [{max: 2, per: 7d}]; checked at send time.")

    @property
    def company_name(self) -> str:
        """The display name of ``sender`` (its domain when it has none)."""
        name, address = parseaddr(self.sender)
        return name or address.rpartition("@")[2]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- catalogue
class Category(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transactional: bool
    description: str


class EscalationLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after: Duration = Field(description="How long after the task fell overdue (0h: at once).")
    to: EmailAddress


class Team(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailAddress
    sla: Duration = Field(description="Default due time of the team's handoff tasks.")
    escalation: list[EscalationLevel] = Field(default_factory=list)
    description: str | None = None


# --------------------------------------------------------------------------- touch points
class ExitWhen(BaseModel):
    """End the touch point's journeys when ``event`` arrives: a customer journey when the event
    is about its customer, a segment journey when ``match`` (over ``event`` and ``trigger``) is
    true, or, without ``match``, only the member the event is about. Give exactly one of
    ``goal`` (counted as a goal reached) or ``reason``."""

    model_config = ConfigDict(extra="forbid")
    event: EventRef
    goal: str | None = Field(None, min_length=1, max_length=200,
                             description="What was achieved, e.g. Renewed.")
    reason: str | None = Field(None, min_length=1, max_length=200,
                               description="Why the journey ends, e.g. order cancelled.")
    match: Expression | None = Field(
        None, description="Only when this is true, e.g. "
                          "event.data.job_id == trigger.data.job_id.")

    @model_validator(mode="after")
    def _one_of(self) -> ExitWhen:
        if (self.goal is None) == (self.reason is None):
            raise ValueError("give exactly one of 'goal' (what was achieved) or 'reason'")
        return self

    @property
    def text(self) -> str:
        return self.goal or self.reason or ""


def iter_steps(steps: Iterable[Any]) -> Iterator[Any]:
    """Every step, depth first in document order, nested ones included."""
    for step in steps:
        yield step
        for _, child in step.children():
            yield from iter_steps(child)


class TouchPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(description="The procedure in plain words.")
    trigger: Trigger
    audience: Audience
    entry: Entry = Field(default_factory=Entry)
    steps: Annotated[list[StepConfig], Marker("steps")]
    exit_when: list[ExitWhen] = Field(
        default_factory=list,
        description="Events that end the journey at once, with a goal or a reason "
                    "(e.g. [{event: contract.renewed, goal: Renewed}]).")
    enabled: bool = True
    holdout: Share | None = Field(
        None, description="A share of the entrants (e.g. 10%) kept as a control group: they "
                          "walk the journey but get none of its non-transactional customer "
                          "email, so the report can compare them with the rest.")

    _name: str = PrivateAttr("")

    @property
    def name(self) -> str:
        """The key of the touch point under ``touchpoints:``."""
        return self._name

    @field_validator("description")
    @classmethod
    def _described(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a touch point needs a description: the procedure in plain words")
        return value

    @field_validator("steps", mode="before")
    @classmethod
    def _parse_steps(cls, value: Any, info: ValidationInfo) -> list[Any]:
        if info.context and info.context.get(DEFER_STEPS):
            return []
        problems: list = []
        parsed = parse_steps(value, loc=(), problems=problems)
        if problems:
            raise ValidationError.from_exception_data("steps", [InitErrorDetails(
                type=PydanticCustomError("step_error", "{message}",
                                         {"message": p.message, "hint": p.hint}),
                loc=p.loc, input=None) for p in problems])
        return parsed

    @model_validator(mode="after")
    def _default_entry_rule(self) -> TouchPoint:
        if self.entry.rule is None:
            rule = "once_per_cycle" if self.audience == "customer" else "every_time"
            self.entry = self.entry.model_copy(update={"rule": rule})
        return self

    def all_steps(self) -> Iterator[StepConfig]:
        return iter_steps(self.steps)


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(description="The version of the language; always 1.")
    defaults: Defaults
    categories: dict[CategoryName, Category] = Field(default_factory=dict)
    teams: dict[Name, Team] = Field(default_factory=dict)
    events: dict[EventName, EventType] = Field(default_factory=dict)
    touchpoints: dict[Name, TouchPoint] = Field(default_factory=dict)

    _catalogue: dict[str, EventType] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _engine_events_agree(self) -> ConfigFile:
        problems = [(("events", name, *loc), message, hint)
                    for name, spec in self.events.items() if name in ENGINE_EVENTS
                    for loc, message, hint in engine_event_problems(name, {
                        "example": spec.example,
                        "fields": {k: v.model_dump(exclude_unset=True)
                                   for k, v in spec.fields.items()}})]
        if problems:
            raise ValidationError.from_exception_data("events", [InitErrorDetails(
                type=PydanticCustomError("event_error", "{message}",
                                         {"message": message, "hint": hint}),
                loc=loc, input=None) for loc, message, hint in problems])
        return self

    @model_validator(mode="after")
    def _policy_categories(self) -> ConfigFile:
        problems = policy_problems(self.defaults.contact_policy, self.categories)
        if problems:
            raise ValidationError.from_exception_data("contact_policy", [InitErrorDetails(
                type=PydanticCustomError("policy_error", "{message}", {"message": message}),
                loc=("defaults", "contact_policy", *loc), input=None)
                for loc, message in problems])
        return self

    @model_validator(mode="after")
    def _name_touchpoints(self) -> ConfigFile:
        for name, touchpoint in self.touchpoints.items():
            touchpoint._name = name
        return self

    def touchpoint(self, name: str) -> TouchPoint:
        found = self.touchpoints.get(name)
        if found is None:
            raise NotFoundError(f"no touch point {name!r}",
                                hint=did_you_mean(name, self.touchpoints,
                                                  fallback=one_of(self.touchpoints)))
        return found

    def event_types(self) -> dict[str, EventType]:
        """The event catalogue: the declared events, then the engine's own (a declared one of
        those keeps the built-in contract under its own fields: :func:`merged_event`)."""
        catalogue = (self.__pydantic_private__ or {}).get("_catalogue")  # no slow __getattr__
        if catalogue is None:
            self._merge_catalogue()
            catalogue = self._catalogue
        return dict(catalogue)

    @model_validator(mode="after")
    def _merge_catalogue(self) -> ConfigFile:
        """Built once: :meth:`event_types` is on the hot paths (every event, every render)."""
        catalogue = {name: merged_event(name, spec) for name, spec in self.events.items()}
        for name, spec in ENGINE_EVENTS.items():
            catalogue.setdefault(name, spec)
        self._catalogue = catalogue
        return self

    def step_count(self) -> int:
        return sum(1 for tp in self.touchpoints.values() for _ in iter_steps(tp.steps))
