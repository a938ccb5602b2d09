"""wait: park for a duration, or until a time relative to a customer date field."""

from __future__ import annotations

from datetime import time
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from flows.durations import format_duration
from flows.steps import register
from flows.steps.base import (
    Duration,
    Member,
    Next,
    Outcome,
    RelativeTime,
    StepConfig,
    StepContext,
    StepKind,
    Wait,
)

DEFAULT_AT = time(9, 0)


class WaitStep(StepConfig):
    """Wait ``for`` a duration, or ``until`` e.g. ``60d before contract_end`` (at ``at`` local
    time, 09:00 by default). The resume time moves to the next send-window opening in the
    customer's timezone unless ``respect_send_window`` is false."""

    kind: Literal["wait"] = "wait"
    for_: Duration | None = Field(None, alias="for", description="How long to wait, e.g. 3d.")
    until: RelativeTime | None = None
    at: time | None = Field(None, description="Local time of day for `until` (HH:MM).")
    respect_send_window: bool = True

    @model_validator(mode="after")
    def _one_of(self) -> WaitStep:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("give exactly one of 'for' (e.g. 3d) or 'until' (e.g. 60d before contract_end)")
        if self.at is not None and self.until is None:
            raise ValueError("'at' goes with 'until'")
        return self

    def describe(self) -> str:
        if self.for_ is not None:
            return f"wait {format_duration(self.for_)}"
        return f"wait until {self.until} at {(self.at or DEFAULT_AT).strftime('%H:%M')}"

    def waits(self) -> bool:
        return True

    def sample_result(self, examples=None) -> dict:
        return {"until": "2026-01-01T09:00:00+00:00"}


def run(*, config: WaitStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    outcomes: dict[int, Outcome] = {}
    window = ctx.config.defaults.send_window
    for member in members:
        tz = ZoneInfo(member.customer.timezone)
        if config.for_ is not None:
            due = ctx.now + config.for_
        else:
            anchor = getattr(member.customer, config.until.field)
            if anchor is None:
                outcomes[member.id] = Next({"skipped": f"customer has no {config.until.field}"})
                continue
            due = config.until.resolve(anchor, config.at or DEFAULT_AT, tz)
        if config.respect_send_window and window is not None:
            due = window.next_open(due, tz)
        if due <= ctx.now:
            outcomes[member.id] = Next({"until": due.isoformat(), "skipped": "already past"})
        else:
            outcomes[member.id] = Wait(until=due, result={"until": due.isoformat()})
    return outcomes


register(StepKind(name="wait", config=WaitStep, run=run,
                  summary="Wait for a duration or until a date relative to the customer's "
                          "contract, honouring the send window in their timezone."))
