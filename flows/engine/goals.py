"""``exit_when:``: an event that ends journeys at once (a renewal ends the renewal journey, a
cancelled order ends the install journey).

:func:`end_journeys` runs in the dispatcher, in the transaction that stores the event and before
the event wakes any waiting journey. One query finds the journeys concerned; then, set-based:

* a customer journey ends when the event is about its customer (and ``match`` is true);
* a segment journey ends when ``match`` (over ``event`` and ``trigger``) is true; without
  ``match``, only the member the event is about leaves it;
* the members still ``active`` or ``waiting`` become ``exited`` with the goal or reason, their
  pending continuations are cancelled, the queued resume and wave units are done (a scheduled
  Prefect run of one finds its unit done and ends at once), the holds the journey placed are
  lifted, and the journey is ``done`` once nobody is left in it;
* one audit row per member: ``journey.goal`` (result ``goal``) or ``journey.exited`` (result
  ``exited``), as an ``exit`` step writes them, so reports count them the same way.

A run in flight for such a member never brings it back: :func:`keep_ended` runs at the end of
every batch of a step and puts back any member whose journey ended meanwhile.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from flows.engine.context import build_context
from flows.errors import TouchpointsError
from flows.store.tables import Continuation, Customer, Hold, Journey, Member, WorkUnit
from flows.templating import evaluate

OPEN_MEMBER = ("active", "waiting")
OPEN_CONTINUATION = ("pending", "scheduled")
#: units not yet held by a live run (a leased one is finished by its run, which claims nobody)
UNSTARTED_UNIT = ("queued", "launched")


def rules_for(config, event_type: str) -> dict[str, list[Any]]:
    """{touch point: its exit_when entries for ``event_type``}."""
    out = {}
    for tp in config.touchpoints.values():
        found = [rule for rule in tp.exit_when if rule.event == event_type]
        if found:
            out[tp.name] = found
    return out


def _matches(config, rule, *, journey: Journey, event: dict, customer, now: datetime) -> bool:
    ctx = build_context(config=config, customer=customer, event=event, trigger=journey.trigger,
                        results={}, journey_id=journey.id, touchpoint=journey.touchpoint, now=now)
    try:
        return bool(evaluate(rule.match, ctx))
    except TouchpointsError:  # data the expression cannot read does not match
        return False


def end_journeys(engine, session, event: dict, now: datetime) -> list[dict]:
    """End what the event's ``exit_when`` rules say; what ended, one entry per journey."""
    from flows.store.customers import to_view

    config = engine.config
    rules = rules_for(config, event["type"])
    if not rules:
        return []
    cid = event.get("customer_id")
    member = Member.__table__.alias("own")
    query = (select(Journey, member.c.customer_id)
             .outerjoin(member, and_(member.c.journey_id == Journey.id,
                                     member.c.customer_id == (cid or ""),
                                     member.c.status.in_(OPEN_MEMBER)))
             .where(Journey.status == "active", Journey.touchpoint.in_(sorted(rules))))
    if cid:  # the customer's own journeys, and segment journeys
        query = query.where(or_(Journey.customer_id == cid, Journey.customer_id.is_(None)))
    customers: dict[str, Any] = {}

    def customer_of(customer_id: str):
        if customer_id not in customers:
            row = session.get(Customer, customer_id)
            customers[customer_id] = to_view(row) if row is not None else None
        return customers[customer_id]

    whole: list[tuple[Journey, Any]] = []
    single: list[tuple[Journey, Any]] = []
    for journey, own in session.execute(query.order_by(Journey.started_at, Journey.id)
                                        .execution_options(yield_per=500)):
        for rule in rules[journey.touchpoint]:
            about = journey.customer_id == cid if journey.customer_id else own is not None
            if rule.match is None:
                if cid and about:
                    (whole if journey.customer_id else single).append((journey, rule))
                    break
                continue
            if journey.customer_id and cid and journey.customer_id != cid:
                continue
            seen = customer_of(journey.customer_id) if journey.customer_id else None
            if _matches(config, rule, journey=journey, event=event, customer=seen, now=now):
                whole.append((journey, rule))
                break
    ended = [_end(session, config, journey, rule, event, now, customer_id=None)
             for journey, rule in whole]
    ended += [_end(session, config, journey, rule, event, now, customer_id=cid)
              for journey, rule in single]
    return [e for e in ended if e["members"]]


def _end(session, config, journey: Journey, rule, event: dict, now: datetime, *,
         customer_id: str | None) -> dict:
    """Exit the journey's open members (or only ``customer_id``'s), in a few statements."""
    from flows.store import audit

    scope = [Member.journey_id == journey.id, Member.status.in_(OPEN_MEMBER)]
    if customer_id is not None:
        scope.append(Member.customer_id == customer_id)
    leaving = list(session.scalars(select(Member.customer_id).where(*scope)))
    session.execute(update(Member).where(*scope).values(
        status="exited", reason=rule.text[:500], waiting_for=None, match=None, due_at=None,
        wave=None, updated_at=now).execution_options(synchronize_session="fetch"))
    holds = delete(Hold).where(Hold.source.like(f"{journey.id}:%"))
    if customer_id is not None:
        holds = holds.where(Hold.customer_id == customer_id)
    session.execute(holds)
    left = session.scalar(select(Member.id).where(
        Member.journey_id == journey.id, Member.status.in_(OPEN_MEMBER)).limit(1))
    continuations = units = 0
    if left is None:  # nobody is left: the journey ends, nothing of it resumes
        cancelled = session.execute(update(Continuation).where(
            Continuation.journey_id == journey.id,
            Continuation.status.in_(OPEN_CONTINUATION)).values(status="cancelled")
            .execution_options(synchronize_session=False))
        continuations = cancelled.rowcount or 0
        done = session.execute(update(WorkUnit).where(
            WorkUnit.journey_id == journey.id, WorkUnit.status.in_(UNSTARTED_UNIT),
            WorkUnit.kind.in_(("resume", "wave", "redrive")))
            .values(status="done", reason=f"journey ended: {rule.text}"[:500], owner=None,
                    lease_expires_at=None, updated_at=_wall())
            .execution_options(synchronize_session=False))
        units = done.rowcount or 0
        journey.status, journey.ended_at = "done", now
        if config.touchpoints[journey.touchpoint].entry.rule == "after_end":
            journey.entry_lock = False
    goal = rule.goal is not None
    detail = {"event_id": event.get("id"), "event_type": event["type"], "exit_when": True}
    audit.record_many(session, [dict(
        action="journey.goal" if goal else "journey.exited", result="goal" if goal else "exited",
        actor="system", touchpoint=journey.touchpoint, customer_id=cid, journey_id=journey.id,
        reason=rule.text, detail=detail, at=now) for cid in leaving])
    return {"journey_id": journey.id, "touchpoint": journey.touchpoint,
            "customer_id": customer_id or journey.customer_id, "members": len(leaving),
            "goal" if goal else "reason": rule.text, "journey_status": journey.status,
            "continuations": continuations, "units": units}


def _wall() -> datetime:
    from flows.engine.units import wall_now

    return wall_now()


def keep_ended(session, *, journey_id: str, member_ids: list[int], now: datetime) -> int:
    """Members of this batch that the step just set going again although their journey ended
    while the step ran (an ``exit_when`` event, a cancel): back to how it left them. On
    PostgreSQL the event's transaction may commit between the batch's read and its write; on
    SQLite the writers queue, so this finds nothing."""
    if not member_ids:
        return 0
    journey = session.get(Journey, journey_id, populate_existing=True)
    if journey is None or journey.status == "active":
        return 0
    status = "cancelled" if journey.status == "cancelled" else "exited"
    result = session.execute(update(Member).where(
        Member.journey_id == journey_id, Member.id.in_(member_ids),
        Member.status.in_(OPEN_MEMBER)).values(
        status=status, waiting_for=None, match=None, due_at=None, wave=None, updated_at=now)
        .execution_options(synchronize_session="fetch"))
    session.execute(update(Continuation).where(
        Continuation.journey_id == journey_id, Continuation.status.in_(OPEN_CONTINUATION))
        .values(status="cancelled").execution_options(synchronize_session=False))
    return result.rowcount or 0


def at_intake(engine, session, event: dict, now: datetime) -> list[dict]:
    """What an event does before it wakes or starts anything: end the journeys its
    ``exit_when`` rules name, then apply its ``updates:`` to the customer (waits follow)."""
    from flows.engine.rescheduling import apply_updates

    ended = end_journeys(engine, session, event, now)
    apply_updates(engine, session, event)
    return ended
