"""wait_for: park until an event tied to this journey arrives, or a timeout passes."""

from __future__ import annotations

from typing import Literal

from flows.durations import format_duration
from flows.steps import register
from flows.steps.base import (
    Duration,
    EventRef,
    Expression,
    Member,
    Outcome,
    StepConfig,
    StepContext,
    StepKind,
    WaitFor,
)


class WaitForStep(StepConfig):
    """Wait for ``event``; ``steps.<id>.outcome`` is then 'event' or 'timeout'.

    Without ``match``, an event matches when it is about the same customer and, if it names
    a journey (survey answers, task events), the same journey.
    """

    kind: Literal["wait_for"] = "wait_for"
    event: EventRef
    timeout: Duration
    match: Expression | None = None

    def describe(self) -> str:
        return f"wait for {self.event} (timeout {format_duration(self.timeout)})"

    def waits(self) -> bool:
        return True

    def sample_result(self, examples=None) -> dict:
        data = dict((examples or {}).get(self.event) or {})
        return {"outcome": "event", "event": {"id": "evt-sample", "type": self.event,
                                             "customer_id": "C-0000",
                                             "occurred_at": "2026-01-01T09:00:00+00:00",
                                             "data": data}}


def run(*, config: WaitForStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    timeout_at = ctx.now + config.timeout
    return {m.id: WaitFor(event=config.event, timeout_at=timeout_at, match=config.match,
                          result={"outcome": "timeout", "event": None})
            for m in members}


register(StepKind(name="wait_for", config=WaitForStep, run=run,
                  summary="Wait for an event tied to this journey (a survey answer, a completed "
                          "task, an outage resolved…) or take the timeout path."))
