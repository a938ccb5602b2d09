"""The service's periodic work: scheduling continuations, firing date and inactivity triggers
(with catch-up after downtime and no double firing), escalating overdue tasks, and
re-dispatching events whose launch failed."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from flows import clock
from flows.engine.redrive import UnitDriver, start_unit_id
from flows.store.tables import Customer, Event, UTCDateTime

log = logging.getLogger("touchpoints.service")

#: a date trigger that fell due while the service was down still fires if it is this recent
CATCH_UP = timedelta(days=7)
#: how often the alert checks look (wall-clock seconds; their thresholds are minutes)
ALERT_CHECK_SECONDS = 30.0


class Housekeeper:
    def __init__(self, engine, launcher) -> None:
        self.engine = engine
        self.launcher = launcher
        self.driver = UnitDriver(engine, launcher)
        self._checked_at: float | None = None  # when the alert checks last ran (monotonic)

    def tick(self, now: datetime | None = None) -> dict[str, int]:
        """The slow loop: triggers and escalations, then whatever they queued is launched."""
        done = self.triggers(now)
        done.update(self.drive())
        return done

    def triggers(self, now: datetime | None = None) -> dict[str, int]:
        now = now or clock.now()
        from flows.engine.dispatch import Dispatcher

        return {"redispatched": Dispatcher(self.engine, self.launcher).redispatch_stuck(),
                "date": self.date_triggers(now), "inactivity": self.inactivity_triggers(now),
                "escalated": self.escalations(now), "alerts": self.alerts(now)}

    def drive(self) -> dict[str, int]:
        """The fast loop: launch queued units (new events, continuations), re-drive dead ones."""
        return {"redriven": self.driver.watch(), "launched": self.driver.launch_queued()}

    # ------------------------------------------------------------------ synthetic trigger events
    def _fire(self, tp, customer_id: str, event_id: str, data: dict, now: datetime) -> bool:
        """Store the trigger in the inbox (its id is the dedup key) with the unit that starts
        the journey, in one transaction; the unit driver launches it."""
        from flows.engine import units

        event_type = f"{tp.trigger.kind}.trigger"
        event = {"id": event_id, "type": event_type, "customer_id": customer_id,
                 "occurred_at": now.isoformat(), "data": data}
        with self.engine.store.session() as session:
            if session.get(Event, event_id) is not None:
                return False
            session.add(Event(id=event_id, type=event_type, customer_id=customer_id, data=data,
                              occurred_at=now, received_at=now, source="scheduler",
                              status="dispatched", dispatched_at=now,
                              result={"started": [tp.name]}))
            units.queue(session, id=start_unit_id(tp.name, event_id), kind="start",
                        touchpoint=tp.name, label=customer_id,
                        params={"event": event, "customer_id": customer_id})
        return True

    def _customers(self, session, batch: int = 500):
        last = ""
        while True:
            rows = session.scalars(select(Customer).where(Customer.id > last)
                                   .order_by(Customer.id).limit(batch)).all()
            if not rows:
                return
            last = rows[-1].id
            yield from rows

    def date_triggers(self, now: datetime) -> int:
        fired = 0
        for tp in self.engine.config.touchpoints.values():
            if not tp.enabled or tp.trigger.kind != "date":
                continue
            rel = tp.trigger.date
            at = getattr(tp.trigger, "at", None) or time(9, 0)
            due = []
            with self.engine.store.session() as session:
                for c in self._customers(session):
                    anchor = getattr(c, rel.field)
                    if anchor is None:
                        continue
                    when = rel.resolve(anchor, at, ZoneInfo(c.timezone))
                    if now - CATCH_UP <= when <= now:
                        due.append((c.id, anchor, when))
            for cid, anchor, when in due:
                event_id = f"date:{tp.name}:{cid}:{anchor.isoformat()}"
                fired += self._fire(tp, cid, event_id, {"field": rel.field, "date": anchor.isoformat(),
                                                        "fires_at": when.isoformat()}, now)
        return fired

    def inactivity_triggers(self, now: datetime) -> int:
        fired = 0
        for tp in self.engine.config.touchpoints.values():
            if not tp.enabled or tp.trigger.kind != "inactivity":
                continue
            cutoff = now - tp.trigger.inactivity
            last_seen = func.coalesce(Customer.last_contact_at, Customer.created_at,
                                      type_=UTCDateTime())
            with self.engine.store.session() as session:
                quiet = session.execute(select(Customer.id, last_seen)
                                        .where(last_seen <= cutoff)).all()
            for cid, last in quiet:
                last_day = last.date().isoformat() if last else "never"
                event_id = f"inactivity:{tp.name}:{cid}:{last_day}"
                fired += self._fire(tp, cid, event_id, {"last_contact": last_day}, now)
        return fired

    def alerts(self, now: datetime) -> int:
        """Look for what went wrong (flows/engine/alert_checks.py), then send the alerts due to
        the operations address (one per kind and subject per hour)."""
        from flows.engine.alert_checks import run_checks
        from flows.engine.alerts import flush_due

        try:
            if self._checked_at is None or monotonic() - self._checked_at >= ALERT_CHECK_SECONDS:
                self._checked_at = monotonic()
                run_checks(self.engine, now=now)
        finally:
            sent = len(flush_due(self.engine, now=now))
        return sent

    def escalations(self, now: datetime) -> int:
        try:
            from flows.actions import escalate_overdue
        except ImportError:  # pragma: no cover - the actions module ships with the web app
            return 0
        return len(escalate_overdue(self.engine, now=now))
