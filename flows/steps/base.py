"""The step protocol.

A step kind is one module under ``flows/steps/`` (or in another package, through the entry-point
group ``touchpoints.steps``) that holds:

* a pydantic config model, subclass of :class:`StepConfig`, with ``kind: Literal["<name>"]``;
* a keyword-only run function ``run(*, config, ctx, members) -> dict[member_id, Outcome]``;
* a registration: ``register(StepKind(name=..., config=..., run=..., summary=...))``.

The compiler and the checker know only this protocol. Fields are checked by what they are
*marked* as (see the ``Annotated`` types below), never by which kind holds them, so a new kind
gets line-numbered checking, JSON Schema and docs with no other edit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from flows.durations import Duration
from flows.durations import RelativeTimeField as RelativeTime


# --------------------------------------------------------------------------- field markers
@dataclass(frozen=True)
class Marker:
    """Metadata telling the checker how to check a string field.

    kinds: ``expression`` (a sandboxed Jinja2 expression), ``text`` (an inline Jinja2 template),
    ``header`` (an inline template whose rendering must be one line: subjects, titles),
    ``template`` (a name under templates/, with ``.txt`` and ``.html`` parts), ``team``,
    ``event`` (an event type from the ``events:`` catalogue), ``category`` (an email category),
    ``steps`` (a nested list of steps, parsed through the registry), ``step`` (an earlier step id).
    """

    kind: str


Expression = Annotated[str, Marker("expression"), Field(description="A sandboxed Jinja2 expression.")]
Text = Annotated[str, Marker("text"), Field(description="A Jinja2 template string.")]
Header = Annotated[str, Marker("header"), Field(description="A one-line Jinja2 template string.")]
TemplateName = Annotated[
    str,
    Marker("template"),
    Field(pattern=r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$",
          description="Template name under templates/, without extension (.txt and .html parts)."),
]
TeamRef = Annotated[str, Marker("team"), Field(description="A team from the teams: section.")]
EventRef = Annotated[str, Marker("event"), Field(description="An event type from the events: section.")]
CategoryRef = Annotated[str, Marker("category"), Field(description="An email category from categories:.")]
StepRef = Annotated[str, Marker("step"), Field(description="The id of an earlier step.")]
StepList = Annotated[list[Any], Marker("steps"), Field(description="Nested steps.")]
StepId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64,
                               description="Unique id of the step in this touch point (snake_case).")]

__all__ = [
    "CategoryRef",
    "CustomerView",
    "Defer",
    "Delivery",
    "Duration",
    "EventRef",
    "Exit",
    "Expression",
    "Header",
    "Marker",
    "Member",
    "MessageSpec",
    "Next",
    "Outcome",
    "RelativeTime",
    "Route",
    "StepConfig",
    "StepContext",
    "StepId",
    "StepKind",
    "StepList",
    "StepRef",
    "TeamRef",
    "TemplateName",
    "Text",
    "Wait",
    "WaitFor",
]


# --------------------------------------------------------------------------- config base
class StepConfig(BaseModel):
    """Base of every step kind's config. Ops leads edit these, so unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: StepId
    kind: str
    note: str | None = Field(None, description="Free text for readers; ignored by the engine.")
    renamed_from: StepId | None = Field(
        None, description="The id this step had before it was renamed: journeys waiting at "
                          "the old id move to this step (audited as journey.migrated).")

    #: set by the registry: the StepKind this config belongs to
    step_kind: ClassVar[StepKind | None] = None

    def children(self) -> list[tuple[str, list[StepConfig]]]:
        """Nested step lists (``(label, steps)``), e.g. a branch's arms. Default: none."""
        return []

    def describe(self) -> str:
        """One line for `touchpoints plan`."""
        return self.kind

    def waits(self) -> bool:
        """True if members may park at this step (it shows as a wait in plans)."""
        return False

    def ends(self) -> bool:
        """True if every member leaves the journey here (plans draw no edge onwards)."""
        return False

    def messages(self) -> list[MessageSpec]:
        """The emails this step sends, for `touchpoints preview`. Default: none."""
        return []

    def sample_result(self, examples: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """An example of what ``steps.<id>`` holds after this step (for checks and docs).

        ``examples`` maps event types to the example data of the ``events:`` catalogue.
        """
        return {}


@dataclass(frozen=True)
class MessageSpec:
    """One email a step sends: to whom, which template, which subject and category, and the
    extra context names (with sample values) the step adds for it."""

    to: str
    template: str
    subject: str
    category: str
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- run-time views
@dataclass
class CustomerView:
    id: str
    name: str
    email: str
    timezone: str
    region: str | None = None
    plan: str | None = None
    contract_start: date | None = None
    contract_end: date | None = None
    account_owner: str | None = None
    account_owner_name: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    #: how the customer is greeted, when the directory says ("Lan" for "Nguyễn Thị Lan")
    preferred_name: str | None = None

    @property
    def first_name(self) -> str:
        if self.preferred_name and self.preferred_name.strip():
            return self.preferred_name.strip()
        return (self.name or "").split(" ")[0] or self.name

    def as_context(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "first_name": self.first_name, "email": self.email,
            "timezone": self.timezone, "region": self.region, "plan": self.plan,
            "contract_start": self.contract_start, "contract_end": self.contract_end,
            "account_owner": self.account_owner, "account_owner_name": self.account_owner_name,
            "attributes": dict(self.attributes),
        }


@dataclass
class Member:
    """One recipient of a journey, as a step's run function sees it."""

    id: int
    customer: CustomerView
    results: dict[str, dict[str, Any]]


# --------------------------------------------------------------------------- outcomes
@dataclass
class Next:
    """Carry on with the next step. ``result`` is kept as ``steps.<id>`` for later steps."""

    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Wait:
    """Park the member until ``until``; the journey resumes *after* this step."""

    until: datetime
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class WaitFor:
    """Park until a matching event arrives or ``timeout_at`` passes; resumes after this step.

    ``result`` is what ``steps.<id>`` holds if the timeout wins; an arriving event replaces it
    with ``{"outcome": "event", "event": {...}}``.
    """

    event: str
    timeout_at: datetime
    match: str | None = None
    result: dict[str, Any] = field(default_factory=lambda: {"outcome": "timeout"})


@dataclass
class Defer:
    """Run *this same step* again for the member at ``until`` (send window, 4xx from SMTP)."""

    until: datetime
    reason: str


@dataclass
class Exit:
    """The member leaves the journey: ``goal`` when it reached its goal, else a reason."""

    reason: str
    goal: bool = False
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Route:
    """Take arm ``arm`` of :meth:`StepConfig.children` (``None``: no arm, carry on)."""

    arm: int | None
    result: dict[str, Any] = field(default_factory=dict)


Outcome = Next | Wait | WaitFor | Defer | Exit | Route


@dataclass
class Delivery:
    """What happened to one email: sent, duplicate (already sent for this key), suppressed,
    deferred, bounced or failed. ``until`` is set when deferred."""

    status: Literal["sent", "duplicate", "suppressed", "deferred", "bounced", "failed"]
    reason: str = ""
    message_id: str | None = None
    recipient: str | None = None
    until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("sent", "duplicate")


class StepContext(Protocol):
    """What the engine gives a run function. Implemented in flows/engine/context.py."""

    touchpoint: Any          # flows.config.models.TouchPoint
    config: Any              # flows.config.models.ConfigFile
    journey_id: str
    trigger: dict[str, Any]  # the event that started the journey
    flow_run_id: str | None
    now: datetime            # aware, UTC

    def context(self, member: Member, **extra: Any) -> dict[str, Any]:
        """The template/expression context for a member (documented in docs/reference.md)."""

    def render(self, text: str, member: Member, *, header: bool = False, **extra: Any) -> str:
        """Render an inline template string; ``header=True`` refuses CR/LF in the output."""

    def evaluate(self, expression: str, member: Member, **extra: Any) -> Any:
        """Evaluate a sandboxed expression for a member."""

    def send_email(self, member: Member, *, to: str, template: str, subject: str,
                   category: str, step_id: str, sender: str = "company",
                   extra: dict[str, Any] | None = None, key: str | None = None) -> Delivery:
        """Render and send one email, idempotent per (journey, step, recipient[, key]).

        Checks consent, suppressions and holds at send time, defers outside the send window,
        retries 4xx and records 5xx as a bounce. Every result lands in the audit trail.
        """

    def audit(self, action: str, *, customer_id: str | None, result: str, reason: str = "",
              detail: dict[str, Any] | None = None) -> None:
        """Append an audit row with touch point, step, flow run id and actor filled in."""

    @property
    def session(self) -> Any:
        """The SQLAlchemy session of this batch (committed by the engine)."""

    def link(self, purpose: str, **claims: Any) -> str:
        """A signed, expiring URL to the web app (purpose: survey, task, unsubscribe...)."""


RunFunction = Callable[..., dict[int, Outcome]]


@dataclass(frozen=True)
class StepKind:
    name: str
    config: type[StepConfig]
    run: RunFunction
    summary: str
    origin: str = "flows.steps"
