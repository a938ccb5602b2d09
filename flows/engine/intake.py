"""The contract check every event passes on its way in (the dispatcher, `touchpoints run`):
data that breaks its event's ``fields:`` is refused before anything is stored or started, and
the refusal is audited (``event.refused``, with each bad field and what was expected)."""

from __future__ import annotations

from flows.config.contracts import validate_event_data
from flows.errors import EventDataError


def refuse_bad_data(engine, *, type: str, data: dict | None, event_id: str | None = None,
                    customer_id: str | None = None, source: str = "cli",
                    actor: str = "system") -> None:
    """Raise :class:`EventDataError` (after one ``event.refused`` audit row) when ``data`` does
    not satisfy the contract of ``type``; the data itself is left as sent."""
    from flows.store import audit

    try:
        validate_event_data(engine.config, type, data)
    except EventDataError as exc:
        with engine.store.session() as session:
            audit.record(session, action="event.refused", result="refused", actor=actor,
                         customer_id=customer_id,
                         reason=f"{type} from {source}: its data does not fit the contract",
                         detail={"event_id": event_id, "type": type, "errors": exc.problems})
        raise


def entry_refusal(engine, *, touchpoint: str, event_id: str,
                  customer_id: str | None) -> str | None:
    """Why the entry rule will refuse the journey a stored event asks ``touchpoint`` for
    (another journey already holds its entry key), or None. The service's outbox answers
    before the journey is entered, so this says in advance what entering will say; entering
    stays the one that decides. Only for event triggers (a count trigger starts from a
    synthetic event, entered as it comes)."""
    from sqlalchemy import select

    from flows import clock
    from flows.engine.audience import entry_key
    from flows.engine.matching import event_dict
    from flows.store.customers import to_view
    from flows.store.tables import Customer, Event, Journey

    tp = engine.touchpoint(touchpoint)
    if tp.trigger.kind != "event":
        return None
    with engine.store.session() as session:
        row = session.get(Event, event_id)
        if row is None:
            return None
        event = event_dict(row)
        customer = None
        if tp.audience == "customer":
            found = session.get(Customer, customer_id) if customer_id else None
            if found is None:
                return f"unknown customer {customer_id!r}"
            customer = to_view(found)
        try:
            key = entry_key(tp, event=event, customer=customer, config=engine.config,
                            now=clock.now())
        except Exception:  # noqa: BLE001 - entering reports a key that cannot be evaluated
            return None
        holders = session.scalars(select(Journey).where(
            Journey.touchpoint == tp.name, Journey.entry_key == key, Journey.entry_lock)).all()
        for other in holders:
            if (other.trigger or {}).get("id") != event_id:  # not the journey of this event
                return (f"entry rule {tp.entry.rule}: journey {other.id} already holds key "
                        f"{key}")
    return None
