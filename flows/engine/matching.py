"""Does an event answer a member's ``wait_for``? One rule for events arriving while the member
waits (the dispatcher) and for events that arrived before it got there (parking)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from flows import clock
from flows.engine.context import build_context
from flows.errors import TouchpointsError
from flows.store.tables import Customer, Event, Journey
from flows.templating import evaluate


def consumed(results: dict) -> list[dict]:
    """The events that already answered an earlier wait of this member, oldest first."""
    out = []
    for result in (results or {}).values():
        event = result.get("event") if isinstance(result, dict) else None
        if isinstance(event, dict) and event.get("id"):
            out.append(event)
    return out


def _answered_before(results: dict, journey: Journey, event: dict) -> bool:
    """True when ``event`` already answered an earlier wait of this member, or is about a step
    of this journey whose event already did (a task completed twice, a survey answer sent again):
    one event answers one wait, and a wait is answered by what happens after it began."""
    data = event.get("data") or {}
    earlier = consumed(results)
    if any(e["id"] == event.get("id") for e in earlier):
        return True
    step = data.get("step_id")
    if data.get("journey_id") == journey.id and step:
        return any((e.get("data") or {}).get("journey_id") == journey.id
                   and (e.get("data") or {}).get("step_id") == step
                   and e.get("type") == event.get("type") for e in earlier)
    return False


def matches(session, config, *, match: str | None, customer_id: str, results: dict,
            journey: Journey, event: dict) -> bool:
    """Without ``match``: same customer and, if the event names a journey, the same journey.
    Never an event that already answered an earlier wait of the member."""
    data = event.get("data") or {}
    if _answered_before(results, journey, event):
        return False
    if match:
        from flows.store.customers import to_view

        customer = to_view(session.get(Customer, customer_id))
        ctx = build_context(config=config, customer=customer, event=event, trigger=journey.trigger,
                            results=results, journey_id=journey.id, touchpoint=journey.touchpoint,
                            now=clock.now())
        try:
            return bool(evaluate(match, ctx))
        except TouchpointsError:
            return False
    if event.get("customer_id") and event["customer_id"] != customer_id:
        return False
    if data.get("journey_id") and data["journey_id"] != journey.id:
        return False
    return bool(event.get("customer_id") or data.get("journey_id"))


def answered_results(results: dict, pointer: str, journey_id: str, event: dict) -> dict:
    """The member's results once ``event`` answered the wait at ``pointer``: the wait records
    the event, and an engine event naming a step of this journey (a survey answer, a task
    completion) merges its ``result`` into that step's results."""
    data = event.get("data") or {}
    out = dict(results or {})
    out[pointer] = {"outcome": "event", "event": event}
    step = data.get("step_id")
    if data.get("journey_id") == journey_id and isinstance(step, str) and isinstance(data.get("result"), dict):
        out[step] = {**out.get(step, {}), **data["result"]}
    return out


def event_dict(row: Event) -> dict:
    return {"id": row.id, "type": row.type, "customer_id": row.customer_id, "data": row.data or {},
            "occurred_at": row.occurred_at.isoformat()}


def earliest_since(session, journey: Journey) -> datetime:
    """The earliest an event can have arrived and still answer a wait of ``journey``."""
    since: datetime = journey.started_at
    trigger_id = (journey.trigger or {}).get("id")
    if trigger_id:
        trigger_row = session.get(Event, trigger_id)
        if trigger_row is not None:
            since = min(since, trigger_row.received_at)
    return since


def may_have_arrived(session, *, journey: Journey, waits: dict) -> set[str]:
    """Of a batch's members parking on a ``wait_for`` (customer id → its WaitFor outcome), those
    for whom :func:`arrived_already` can find anything: one query per event type for the batch,
    so a fan-out whose event has not come parks without a lookup per member."""
    found: set[str] = set()
    by_wait: dict[tuple, list[str]] = {}
    for customer_id, wait in waits.items():
        by_wait.setdefault((wait.event, wait.match), []).append(customer_id)
    if not by_wait:
        return found
    trigger_id = (journey.trigger or {}).get("id")
    since = earliest_since(session, journey)
    for (event_type, match), customer_ids in by_wait.items():
        where = [Event.type == event_type, Event.received_at >= since]
        if trigger_id:
            where.append(Event.id != trigger_id)
        if match:  # any event of the type may match any member (its customer_id may be empty)
            if session.scalar(select(Event.id).where(*where).limit(1)) is not None:
                found.update(customer_ids)
            continue
        for start in range(0, len(customer_ids), 500):
            chunk = customer_ids[start:start + 500]
            found.update(session.scalars(select(Event.customer_id).distinct()
                                         .where(*where, Event.customer_id.in_(chunk))))
    return found


def arrived_already(session, config, *, journey: Journey, customer_id: str, results: dict,
                    event_type: str, match: str | None) -> dict | None:
    """A matching event that reached the inbox before the member got to its wait_for (events
    race the runs they start when runs are scheduled): after the journey's trigger and after
    the event that answered the member's previous wait, never that event itself. The second
    ``wait_for task.completed`` of a journey is answered by the second task, not the first."""
    since = earliest_since(session, journey)
    trigger_id = (journey.trigger or {}).get("id")
    earlier = [e["id"] for e in consumed(results)]
    if earlier:
        last = session.scalar(select(func.max(Event.received_at)).where(Event.id.in_(earlier)))
        if last is not None:
            since = max(since, last)
    query = select(Event).where(Event.type == event_type, Event.received_at >= since)
    if not match:
        query = query.where(Event.customer_id == customer_id)
    for row in session.scalars(query.order_by(Event.received_at).limit(200)):
        if row.id == trigger_id:
            continue
        event = event_dict(row)
        if matches(session, config, match=match, customer_id=customer_id, results=results,
                   journey=journey, event=event):
            return event
    return None
