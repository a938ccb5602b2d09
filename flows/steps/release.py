"""release: end a hold started by an earlier hold step, now or after a delay."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from sqlalchemy import update

from flows.durations import format_duration
from flows.steps import register
from flows.steps.base import (
    Duration,
    Member,
    Next,
    Outcome,
    StepConfig,
    StepContext,
    StepKind,
    StepRef,
)
from flows.store.tables import Hold


class ReleaseStep(StepConfig):
    """Release the hold of step ``hold`` ``after`` a delay (e.g. 3d after resolution)."""

    kind: Literal["release"] = "release"
    hold: StepRef
    after: Duration = timedelta(0)

    def describe(self) -> str:
        delay = f" after {format_duration(self.after)}" if self.after else ""
        return f"release hold {self.hold}{delay}"

    def sample_result(self, examples=None) -> dict:
        return {"released_at": "2026-01-04T09:00:00+00:00"}


def run(*, config: ReleaseStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    until = ctx.now + config.after
    ids = [m.customer.id for m in members]
    ctx.session.execute(update(Hold).where(Hold.source == f"{ctx.journey_id}:{config.hold}",
                                           Hold.customer_id.in_(ids)).values(until=until))
    for member in members:
        ctx.audit("hold.released", customer_id=member.customer.id, result="released",
                  reason=f"hold {config.hold} ends {until.isoformat()}")
    return {m.id: Next({"released_at": until.isoformat()}) for m in members}


register(StepKind(name="release", config=ReleaseStep, run=run,
                  summary="Release a hold started earlier in the journey, now or after a delay."))
