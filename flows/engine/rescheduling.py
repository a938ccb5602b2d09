"""Waits that move with the customer's dates: a member parked at ``until: 60d before
contract_end`` resumes 60 days before the contract end the customer has *now*.

* :func:`following_dates` wraps a customer update (the API's PUT and import, an event's
  ``updates:``): it notes the customers' dates before, and after the update moves the waits of
  those whose ``contract_start``, ``contract_end`` or timezone changed, in the same
  transaction;
* :func:`move_waits` recomputes, set-based, the due time of every waiting member of those
  customers whose wait is relative to a changed field (the step of the version the journey
  runs on, the send window included), moves its continuation and cancels the old one with its
  queued resume unit (a Prefect run scheduled for the old time finds its unit done and ends at
  once). A time already past falls due now. Each move is audited (``journey.rescheduled``);
* :func:`apply_updates` is an event's ``updates:`` (``{contract_end: new_contract_end}``),
  written through the store's customer update.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from flows import clock
from flows.engine.journeys import continuation_id
from flows.store.tables import Continuation, Customer, Journey, Member, WorkUnit

#: the customer fields a date-relative wait depends on
WATCHED = ("contract_start", "contract_end", "timezone")
CHUNK = 500


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _dates(session, ids: list[str]) -> dict[str, tuple]:
    out = {}
    for chunk in _chunks(ids):
        for row in session.execute(select(Customer.id, Customer.contract_start,
                                          Customer.contract_end, Customer.timezone)
                                   .where(Customer.id.in_(chunk))):
            out[row[0]] = tuple(row[1:])
    return out


@contextmanager
def following_dates(engine, session, customer_ids: Iterable[Any], *, actor: str = "system",
                    cause: str = "customer updated"):
    """Around an update of these customers: afterwards, their waits follow their new dates."""
    ids = [i for i in dict.fromkeys(customer_ids) if isinstance(i, str) and i]
    before = _dates(session, ids)
    yield
    session.flush()
    after = _dates(session, list(before))
    changed = {cid: {name for name, old, new in zip(WATCHED, before[cid], values) if old != new}
               for cid, values in after.items()}
    changed = {cid: fields for cid, fields in changed.items() if fields}
    if changed:
        move_waits(engine, session, changed, actor=actor, cause=cause)


def _step_of(engine, session, journey: Journey, pointer: str, cache: dict):
    from flows.engine.compiler import find_path
    from flows.engine.versions import for_journey

    key = (journey.touchpoint, journey.version, pointer)
    if key not in cache:
        try:
            steps = for_journey(engine, session, journey).touchpoint.steps
        except Exception:  # noqa: BLE001 - a touch point gone from the file: its waits stay
            steps = []
        path = find_path(steps, pointer)
        step = path[-1][0][path[-1][1]] if path else None
        cache[key] = step if getattr(step, "kind", None) == "wait" and step.until else None
    return cache[key]


def _due(engine, step, row: Customer, now: datetime) -> datetime:
    from flows.steps.wait import DEFAULT_AT

    anchor = getattr(row, step.until.field)
    if anchor is None:  # the date is gone: the wait would not have waited
        return now
    tz = ZoneInfo(row.timezone)
    due = step.until.resolve(anchor, step.at or DEFAULT_AT, tz)
    window = engine.config.defaults.send_window
    if step.respect_send_window and window is not None:
        due = window.next_open(due, tz)
    return max(due.astimezone(UTC), now)


def move_waits(engine, session, changed: dict[str, set[str]], *, now: datetime | None = None,
               actor: str = "system", cause: str = "customer updated") -> list[dict]:
    """Move the date-relative waits of customers whose fields ``changed`` ({id: names})."""
    from flows.store import audit

    now = now or clock.now()
    cache: dict = {}
    moves: list[dict] = []
    for chunk in _chunks(sorted(changed)):
        rows = session.execute(
            select(Member, Journey, Customer)
            .join(Journey, Journey.id == Member.journey_id)
            .join(Customer, Customer.id == Member.customer_id)
            .where(Member.customer_id.in_(chunk), Member.status == "waiting",
                   Member.waiting_for.is_(None), Member.resume_mode == "after",
                   Member.pointer.is_not(None), Journey.status == "active")
            .order_by(Member.id)).all()
        for member, journey, customer in rows:
            step = _step_of(engine, session, journey, member.pointer, cache)
            fields = changed[member.customer_id]
            if step is None or not ({step.until.field, "timezone"} & fields):
                continue
            due = _due(engine, step, customer, now)
            if member.due_at is not None and due == member.due_at:
                continue
            moves.append({"member": member, "journey": journey, "old": member.due_at,
                          "new": due, "step": step})
    if not moves:
        return []
    olds = set()
    for move in moves:
        member, journey = move["member"], move["journey"]
        member.due_at, member.updated_at = move["new"], now
        if move["old"] is not None:
            olds.add((journey.id, member.pointer, move["old"]))
        cid = continuation_id(journey.id, member.pointer, "after", move["new"])
        existing = session.get(Continuation, cid)
        if existing is None:
            session.add(Continuation(id=cid, journey_id=journey.id, touchpoint=journey.touchpoint,
                                     pointer=member.pointer, kind="wait", due_at=move["new"],
                                     status="pending",
                                     label=f"{member.customer_id} · {member.pointer}"))
        elif existing.status not in ("pending", "scheduled"):
            existing.status = "pending"
        session.flush()
    _drop_old(session, olds)
    audit.record_many(session, [dict(
        action="journey.rescheduled", result="rescheduled", actor=actor,
        touchpoint=m["journey"].touchpoint, customer_id=m["member"].customer_id,
        journey_id=m["journey"].id, at=now,
        reason=(f"{m['step'].id} ({m['step'].until}) moved from "
                f"{m['old'].isoformat() if m['old'] else '-'} to {m['new'].isoformat()}: "
                f"{cause}")[:500],
        detail={"step": m["step"].id, "from": m["old"].isoformat() if m["old"] else None,
                "to": m["new"].isoformat()}) for m in moves])
    return [{"journey_id": m["journey"].id, "customer_id": m["member"].customer_id,
             "step": m["step"].id, "from": m["old"], "to": m["new"]} for m in moves]


def _drop_old(session, olds: set[tuple[str, str, datetime]]) -> None:
    """Cancel each old continuation no member waits for any more (found by its time: a wait
    names its continuation in the customer's local time), and its unstarted resume unit."""
    from flows.engine.redrive import resume_unit_id
    from flows.engine.units import wall_now

    for journey_id, pointer, due in sorted(olds, key=lambda o: (o[0], o[1], o[2])):
        still = session.scalar(select(func.count()).select_from(Member).where(
            Member.journey_id == journey_id, Member.pointer == pointer,
            Member.status == "waiting", Member.due_at == due)) or 0
        if still:
            continue
        old = list(session.scalars(select(Continuation.id).where(
            Continuation.journey_id == journey_id, Continuation.pointer == pointer,
            Continuation.due_at == due, Continuation.status.in_(("pending", "scheduled")))))
        if not old:
            continue
        session.execute(update(Continuation).where(Continuation.id.in_(old))
                        .values(status="cancelled").execution_options(synchronize_session=False))
        session.execute(update(WorkUnit).where(
            WorkUnit.id.in_([resume_unit_id(c) for c in old]),
            WorkUnit.status.in_(("queued", "launched")))
            .values(status="done", reason="the wait moved with the customer's dates",
                    updated_at=wall_now()).execution_options(synchronize_session=False))


# ---------------------------------------------------------------------- an event's updates:
def _as_input(row: Customer) -> dict[str, Any]:
    from flows.store.customer_checks import FIELDS

    data: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(row, name)
        data[name] = value.isoformat() if isinstance(value, date | datetime) else value
    data["attributes"] = dict(row.attributes or {})
    return {k: v for k, v in data.items() if v is not None}


def apply_updates(engine, session, event: dict) -> dict[str, Any]:
    """The customer fields the event's ``updates:`` set (only those its data carries), written
    through the store's customer update (checked and audited as any update); waits follow."""
    from flows.store.importing import upsert_customer

    spec = engine.config.event_types().get(event["type"])
    cid = event.get("customer_id")
    if spec is None or not spec.updates or not cid:
        return {}
    data = event.get("data") or {}
    changes = {target: data[source] for target, source in spec.updates.items()
               if data.get(source) is not None}
    row = session.get(Customer, cid)
    if not changes or row is None:
        return {}
    with following_dates(engine, session, [cid], cause=f"{event['type']} {event.get('id')}"):
        upsert_customer(session, {**_as_input(row), **changes}, actor="system",
                        source=f"event {event['type']}")
    return changes
