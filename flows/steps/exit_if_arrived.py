"""exit_if_arrived: leave the journey when an event has already arrived (no outage update after
the resolution notice)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from sqlalchemy import select

from flows.config.contracts import typed_event
from flows.durations import format_duration
from flows.errors import TouchpointsError
from flows.steps import register
from flows.steps.base import (
    Duration,
    EventRef,
    Exit,
    Expression,
    Header,
    Member,
    Next,
    Outcome,
    StepConfig,
    StepContext,
    StepKind,
)
from flows.store.tables import Event
from flows.templating import evaluate

#: the most events of the type looked at per member (newest first)
LOOK_AT = 200


class ExitIfArrivedStep(StepConfig):
    """Leave the journey, with ``reason``, if an ``event`` that matches has reached the inbox in
    the last ``within``; otherwise carry on. Checked when the member gets here, so put it just
    before the email it guards. ``match`` is an expression over ``event`` (the one in the inbox)
    and ``trigger``; without it, an event matches when it is about the same customer.
    ``steps.<id>.arrived`` is false for members who carried on."""

    kind: Literal["exit_if_arrived"] = "exit_if_arrived"
    event: EventRef
    match: Expression | None = None
    within: Duration = timedelta(days=7)
    reason: Header

    def describe(self) -> str:
        return f"exit if {self.event} arrived in the last {format_duration(self.within)}"

    def sample_result(self, examples=None) -> dict:
        return {"arrived": False, "event": None}


def _event(row: Event) -> dict:
    return {"id": row.id, "type": row.type, "customer_id": row.customer_id, "data": row.data or {},
            "occurred_at": row.occurred_at.isoformat()}


def _first_match(config: ExitIfArrivedStep, ctx: StepContext, member: Member,
                 candidates: list[dict]) -> dict | None:
    if config.match is None:
        return next((e for e in candidates if e.get("customer_id") == member.customer.id), None)
    names = ctx.context(member)
    for event in candidates:
        names["event"] = typed_event(ctx.config, event)
        try:
            if evaluate(config.match, names):
                return event
        except TouchpointsError:  # data the expression cannot read does not match
            continue
    return None


def run(*, config: ExitIfArrivedStep, ctx: StepContext,
        members: list[Member]) -> dict[int, Outcome]:
    since = ctx.now - config.within
    query = select(Event).where(Event.type == config.event, Event.received_at >= since,
                                Event.received_at <= ctx.now)
    if config.match is None:
        query = query.where(Event.customer_id.in_([m.customer.id for m in members]))
    rows = ctx.session.scalars(query.order_by(Event.received_at.desc()).limit(LOOK_AT)).all()
    candidates = [_event(row) for row in rows]
    outcomes: dict[int, Outcome] = {}
    for member in members:
        found = _first_match(config, ctx, member, candidates)
        if found is None:
            outcomes[member.id] = Next({"arrived": False, "event": None})
            continue
        reason = ctx.render(config.reason, member, header=True)
        ctx.audit("journey.event", customer_id=member.customer.id, result="arrived",
                  reason=f"{config.event} {found['id']} has arrived: {reason}"[:500])
        outcomes[member.id] = Exit(reason=reason, result={"arrived": True, "event": found})
    return outcomes


register(StepKind(name="exit_if_arrived", config=ExitIfArrivedStep, run=run,
                  summary="Leave the journey if an event has already arrived (e.g. no outage "
                          "update once the outage is resolved)."))
