"""The outbox's batch: the events the intake writer (flows/engine/groupcommit.py) took
together, stored in one transaction, batch-shaped.

What every event needs is read once for the batch: which ids are stored already, the customers
(kept in the session, so each event's lookups cost no query), which event types any member
waits for, which start units exist. Each event is then stored with the dispatcher's own
``_record``: all of them in one go first (each table's new rows in one statement at the flush);
if one fails, the batch is written again with a savepoint per event, so one refused event
leaves the others stored. What can wait for the batch's end does: the ``event.received`` audit
rows (one ``audit.record_many``) and the entry-rule check of the starts (one query per touch
point).

Audit order is kept: an event type that writes audit rows of its own at intake (``exit_when``
rules, ``updates:``) first writes the rows gathered so far, then its own in place.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from flows.store.tables import Customer, Event, Member, WorkUnit

log = logging.getLogger("touchpoints.engine")


class Batch:
    def __init__(self, engine, session, items: list[dict]) -> None:
        from flows.engine.goals import rules_for
        from flows.engine.redrive import start_unit_id

        config = engine.config
        types = {item["type"] for item in items}
        catalogue = config.event_types()
        #: types whose intake writes audit rows of its own: their event.received is in place
        self._ordered = {t for t in types if rules_for(config, t)
                         or getattr(catalogue.get(t), "updates", None)}
        self._counted = {t for t in types for tp in config.touchpoints.values()
                         if tp.trigger.kind == "count" and getattr(tp.trigger, "event", None) == t}
        ids = {item["event_id"] for item in items}
        stored = session.scalars(select(Event).where(Event.id.in_(ids))).all()
        self._absent = ids - {row.id for row in stored}
        customer_ids = {item["customer_id"] for item in items if item["customer_id"]}
        customers = (session.scalars(select(Customer).where(Customer.id.in_(customer_ids))).all()
                     if customer_ids else [])
        self._waited = set(session.scalars(select(Member.waiting_for).distinct().where(
            Member.status == "waiting", Member.waiting_for.in_(types))))
        starting = {t: [tp.name for tp in config.touchpoints.values()
                        if getattr(tp.trigger, "event", None) == t] for t in types}
        unit_ids = {start_unit_id(name, item["event_id"]) for item in items
                    for name in starting[item["type"]]}
        found = set(session.scalars(select(WorkUnit.id).where(WorkUnit.id.in_(unit_ids)))) \
            if unit_ids else set()
        self._new_units = unit_ids - found
        self._customers = {row.id for row in customers}
        self._keep = [*stored, *customers]  # the session's identity map holds them weakly
        #: event.received rows not written yet
        self.audit: list[dict[str, Any]] = []
        #: (answer, [(start, event)]) whose entry rules are checked at the batch's end
        self.entries: list[tuple[Any, list[tuple[dict, dict]]]] = []

    def new(self, event_id: str) -> bool:
        """True once for an id the store did not hold when the batch began (a second item of
        the same id then finds the first one in the session)."""
        if event_id in self._absent:
            self._absent.discard(event_id)
            return True
        return False

    def known(self, customer_id: str) -> bool:
        return customer_id in self._customers

    def counts(self, event_type: str) -> bool:
        """A count trigger counts events of this type: the event must be in the store first."""
        return event_type in self._counted

    def waits(self, event_type: str) -> bool:
        return event_type in self._waited

    def defer_audit(self, event_type: str) -> bool:
        return event_type not in self._ordered

    def ordered(self, event_type: str) -> bool:
        return event_type in self._ordered

    def new_unit(self, unit_id: str) -> bool:
        if unit_id in self._new_units:
            self._new_units.discard(unit_id)
            return True
        return False

    @staticmethod
    def add_start_unit(session, *, id: str, touchpoint: str, label: str, params: dict) -> None:
        """A queued start unit the batch knows is new (what ``units.queue`` writes, without
        its lookup)."""
        from flows.engine.units import wall_now

        now = wall_now()
        session.add(WorkUnit(id=id, kind="start", touchpoint=touchpoint, journey_id=None,
                             params=params, label=label[:300], status="queued", due_at=None,
                             attempts=0, reason="", created_at=now, updated_at=now))

    def write_audit(self, session) -> None:
        from flows.store import audit

        if self.audit:
            audit.record_many(session, self.audit)
            self.audit = []


def write_batch(dispatcher, session, items: list[dict]) -> list:
    """Store the batch's events; one outcome per event: its answer, or the exception for its
    caller. First all at once (every row of a table in one statement at the flush); if any
    event fails there, the transaction is rolled back and the batch written again with a
    savepoint per event, so only the failing one is refused."""
    if len(items) > 1:
        try:
            return _write(dispatcher, session, items, savepoints=False)
        except Exception as exc:  # noqa: BLE001 - written again, event by event, below
            log.info("outbox batch of %s written again event by event: %s", len(items), exc)
            session.rollback()
    return _write(dispatcher, session, items, savepoints=len(items) > 1)


def _write(dispatcher, session, items: list[dict], *, savepoints: bool) -> list:
    from flows.engine.dispatch import _duplicate, unknown_customer
    from flows.engine.intake import admit, entry_refusals

    batch = Batch(dispatcher.engine, session, items)
    outcomes: list = []

    def one(item: dict):
        event_id = item["event_id"]
        existing = None if batch.new(event_id) else session.get(Event, event_id)
        if existing is not None:
            return _duplicate(existing)
        if item["customer_id"] is not None and not batch.known(item["customer_id"]):
            return unknown_customer(item["customer_id"])  # refused before it writes anything
        return dispatcher._record(session, batch=batch, **item)[1]

    for item in items:
        if batch.ordered(item["type"]):
            batch.write_audit(session)  # the rows before it, before its own
        if not savepoints:
            outcomes.append(one(item))
            continue
        gathered = len(batch.audit), len(batch.entries)
        try:
            with session.begin_nested():
                outcome = one(item)
        except Exception as exc:  # noqa: BLE001 - this event's error, for its caller
            del batch.audit[gathered[0]:], batch.entries[gathered[1]:]
            outcome = exc
        outcomes.append(outcome)
    batch.write_audit(session)
    checks = [pair for _, pairs in batch.entries for pair in pairs]
    reasons = iter(entry_refusals(session, dispatcher.engine, checks))
    for answer, pairs in batch.entries:
        admit(answer, pairs, [next(reasons) for _ in pairs])
    session.flush()  # a failure here is the batch's, while it can still be written again
    return outcomes
