"""hold: keep the member out of some email categories (other journeys' sends are suppressed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from sqlalchemy import select

from flows.steps import register
from flows.steps.base import (
    CategoryRef,
    Header,
    Member,
    Next,
    Outcome,
    StepConfig,
    StepContext,
    StepKind,
)
from flows.store.tables import Hold


class HoldStep(StepConfig):
    """Hold the member out of ``categories`` until a ``release`` step (or forever). Emails of
    those categories from *other* journeys are suppressed, and the audit trail records
    ``reason``."""

    kind: Literal["hold"] = "hold"
    categories: list[CategoryRef] = Field(min_length=1)
    reason: Header

    def describe(self) -> str:
        return f"hold out of {', '.join(self.categories)}"

    def sample_result(self, examples=None) -> dict:
        return {"held": True, "reason": "sample reason"}


def run(*, config: HoldStep, ctx: StepContext, members: list[Member]) -> dict[int, Outcome]:
    source = f"{ctx.journey_id}:{config.id}"
    existing = set(ctx.session.scalars(
        select(Hold.customer_id).where(Hold.source == source,
                                       Hold.customer_id.in_([m.customer.id for m in members]))))
    outcomes: dict[int, Outcome] = {}
    for member in members:
        reason = ctx.render(config.reason, member, header=True)
        if member.customer.id not in existing:
            ctx.session.add(Hold(customer_id=member.customer.id, categories=list(config.categories),
                                 reason=reason, source=source, created_at=ctx.now, until=None))
            ctx.audit("hold.started", customer_id=member.customer.id, result="held",
                      reason=reason, detail={"categories": list(config.categories)})
        outcomes[member.id] = Next({"held": True, "reason": reason})
    return outcomes


register(StepKind(name="hold", config=HoldStep, run=run,
                  summary="Hold customers out of email categories (e.g. surveys during an open "
                          "outage); suppressed sends are audited with the reason."))
