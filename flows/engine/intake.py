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
    from flows.engine.matching import event_dict
    from flows.store.tables import Event

    if engine.touchpoint(touchpoint).trigger.kind != "event":
        return None
    store = engine.store
    with getattr(store, "read_session", store.session)() as session:  # no write lock
        row = session.get(Event, event_id)
        if row is None:
            return None
        return entry_refusal_in(session, engine, touchpoint=touchpoint, event=event_dict(row),
                                customer_id=customer_id)


def entry_refusal_in(session, engine, *, touchpoint: str, event: dict,
                     customer_id: str | None) -> str | None:
    """:func:`entry_refusal` in the caller's transaction, for an event it holds."""
    return entry_refusals(session, engine, [({"touchpoint": touchpoint,
                                              "customer_id": customer_id}, event)])[0]


def entry_refusals(session, engine, starts: list[tuple[dict, dict]]) -> list[str | None]:
    """:func:`entry_refusal` for many starts at once (``(start, event)`` pairs, a start being
    ``{"touchpoint", "customer_id"}``), in the caller's transaction: the keys are evaluated
    here and the journeys holding them read in one query per touch point. One reason or
    None per start, in order."""
    from sqlalchemy import select

    from flows import clock
    from flows.engine.audience import entry_key
    from flows.store.customers import to_view
    from flows.store.tables import Customer, Journey

    reasons: list[str | None] = [None] * len(starts)
    wanted: dict[str, dict[str, list[int]]] = {}  # touch point -> key -> the starts asking
    views: dict[str, object] = {}
    now = clock.now()
    for n, (start, event) in enumerate(starts):
        tp = engine.touchpoint(start["touchpoint"])
        if tp.trigger.kind != "event":
            continue
        customer, cid = None, start.get("customer_id")
        if tp.audience == "customer":
            if cid not in views:
                found = session.get(Customer, cid) if cid else None
                views[cid] = to_view(found) if found is not None else None
            customer = views[cid]
            if customer is None:
                reasons[n] = f"unknown customer {cid!r}"
                continue
        try:
            key = entry_key(tp, event=event, customer=customer, config=engine.config, now=now)
        except Exception:  # noqa: BLE001, S112 - entering reports a key it cannot evaluate
            continue
        wanted.setdefault(tp.name, {}).setdefault(key, []).append(n)
    for name, keys in wanted.items():
        rule = engine.touchpoint(name).entry.rule
        holders = session.execute(select(Journey.id, Journey.entry_key, Journey.trigger).where(
            Journey.touchpoint == name, Journey.entry_key.in_(list(keys)), Journey.entry_lock))
        for journey_id, key, trigger in holders:
            for n in keys.get(key, []):
                if reasons[n] is None and (trigger or {}).get("id") != starts[n][1]["id"]:
                    reasons[n] = f"entry rule {rule}: journey {journey_id} already holds key {key}"
    return reasons


def admit(answer, starts: list[tuple[dict, dict]], reasons: list[str | None]) -> None:
    """Put each start in the answer: ``started``, or ``skipped`` with the entry rule's reason
    (its unit stays queued all the same: entering is the one that decides)."""
    for (start, _), reason in zip(starts, reasons, strict=True):
        if reason:
            answer.skipped.append({"touchpoint": start["touchpoint"], "reason": reason})
        else:
            answer.started.append({k: v for k, v in start.items() if k != "event"})
