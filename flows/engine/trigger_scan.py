"""Date and inactivity triggers as indexed queries over the customer and event tables.

**Date triggers** (``date: "90d before contract_end"``, ``at: "09:00"`` in the customer's time
zone) fire once per customer per date, up to :data:`CATCH_UP` late after downtime. A scan asks
the index on the date column for the customers whose date lies in the range that can put the
moment inside ``[start, end]`` in *some* time zone (the range widened by :data:`_SLACK`); the
exact moment is then worked out in Python (:meth:`RelativeTime.resolve`) for that small set
only. Those already fired (the trigger event's id is the dedup key) are left out with one query
per batch.

**Inactivity triggers** (``inactivity: 30d``) fire once per silence: one query per touch point
finds the customers whose last contact (or, never contacted, their creation) is older than the
threshold and who have no trigger event for this silence yet; the event's id carries the UTC
day of that last contact, built in SQL and looked up by primary key (an anti-join).

:class:`TriggerScanner` sets the cadence: a full scan on start (the catch-up), whenever the
triggers change and every :data:`RESCAN` of journey time. Between full scans the date firings
due within :data:`AHEAD` are held in memory and fire at their moment (the customer's row read
again first, so a moved date does not fire), and inactivity looks only at the customers who
crossed the threshold since the previous tick (an index range). A change that a range cannot
see (a date or last contact written into the past) is found by the next full scan.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import String, and_, exists, func, literal, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from flows.store.tables import Customer, Event, UTCDateTime

log = logging.getLogger("touchpoints.service")

#: a date trigger that fell due while the service was down still fires if it is this recent
CATCH_UP = timedelta(days=7)
#: how far ahead a date scan looks; what falls due in that time fires from memory
AHEAD = timedelta(days=1)
#: how often (journey time) the full scans run again, to see what the ranges cannot
RESCAN = timedelta(hours=1)
#: widening of the anchor-date range: any UTC offset (local mean times reach ±16 h), the
#: local time of day (< 1 day) and DST shifts fit inside it
_SLACK = timedelta(days=3)
#: ids per IN (...) query
_BATCH = 500


# --------------------------------------------------------------------------- date triggers
@dataclass(frozen=True, order=True)
class DateFiring:
    """A date trigger's moment for one customer: ``when`` is aware, in the customer's zone."""

    when: datetime
    customer_id: str
    anchor: date = field(compare=False)

    def event_id(self, touchpoint: str) -> str:
        return f"date:{touchpoint}:{self.customer_id}:{self.anchor.isoformat()}"

    def data(self, rel) -> dict:
        return {"field": rel.field, "date": self.anchor.isoformat(), "fires_at": self.when.isoformat()}


def _zone(name: str | None) -> ZoneInfo | None:
    try:
        return ZoneInfo(name or "")
    except (ZoneInfoNotFoundError, ValueError):
        return None


def anchor_range(rel, start: datetime, end: datetime) -> tuple[date, date]:
    """The customer dates whose moment can fall in ``[start, end]`` in any time zone."""
    sign = -1 if rel.direction == "before" else 1
    try:
        low = (start - sign * rel.offset - _SLACK).date()
    except OverflowError:
        low = date.min
    try:
        high = (end - sign * rel.offset + _SLACK).date()
    except OverflowError:
        high = date.max
    return low, high


def date_firings(session, trigger, start: datetime, end: datetime,
                 customer_ids: Sequence[str] | None = None) -> list[DateFiring]:
    """Every customer whose moment for ``trigger`` lies in ``[start, end]``, by customer id:
    an index range on the date column, then the exact moment per customer of that range (or
    of ``customer_ids``, when given: a re-check of known firings)."""
    rel = trigger.date
    at = getattr(trigger, "at", None) or time(9, 0)
    column = getattr(Customer, rel.field)
    query = select(Customer.id, Customer.timezone, column)
    if customer_ids is None:
        low, high = anchor_range(rel, start, end)
        query = query.where(column >= low, column <= high)
    else:
        query = query.where(Customer.id.in_(customer_ids), column.is_not(None))
    found = []
    for customer_id, zone_name, anchor in sorted(session.execute(query)):  # by id, in Python:
        # an ORDER BY would tempt SQLite to walk the whole table in key order
        zone = _zone(zone_name)
        if zone is None:
            log.warning("customer %s has an unknown time zone %r; its date triggers wait until "
                        "it is corrected", customer_id, zone_name)
            continue
        try:
            when = rel.resolve(anchor, at, zone)
        except OverflowError:
            continue
        if start <= when <= end:
            found.append(DateFiring(when=when, customer_id=customer_id, anchor=anchor))
    return found


def fired_ids(session, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` are in the event inbox already (one query per batch)."""
    ids = list(ids)
    found: set[str] = set()
    for i in range(0, len(ids), _BATCH):
        found.update(session.scalars(select(Event.id).where(Event.id.in_(ids[i:i + _BATCH]))))
    return found


# --------------------------------------------------------------------------- inactivity
class utc_day(FunctionElement):  # a SQL function, named like one
    """``YYYY-MM-DD`` of a UTC timestamp column, as Python's ``.date().isoformat()`` gives."""

    type = String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element, compiler, **kw):  # stored as "YYYY-MM-DD HH:MM:SS.ffffff", UTC
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element, compiler, **kw):
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def inactivity_event_id(touchpoint: str, customer_id: str, last_day: str) -> str:
    return f"inactivity:{touchpoint}:{customer_id}:{last_day}"


def quiet_customers(session, touchpoint: str, threshold: timedelta, now: datetime,
                    since: datetime | None = None) -> list[tuple[str, str]]:
    """``(customer id, UTC day of the last contact)`` of every customer silent for
    ``threshold`` at ``now`` with no trigger event for this silence yet, by id: one query.
    With ``since`` (the previous look), only those who fell silent after it."""
    contact, created = Customer.last_contact_at, Customer.created_at
    cutoff = now - threshold
    if since is None:
        quiet = or_(contact <= cutoff, and_(contact.is_(None), created <= cutoff))
    else:
        after = since - threshold
        quiet = or_(and_(contact > after, contact <= cutoff),
                    and_(contact.is_(None), created > after, created <= cutoff))
    last_seen = func.coalesce(contact, created, type_=UTCDateTime())
    day = utc_day(last_seen)
    event_id = literal(f"inactivity:{touchpoint}:", String) + Customer.id + literal(":", String) + day
    fired = exists().where(Event.id == event_id)
    return sorted((cid, last_day or "never") for cid, last_day in session.execute(
        select(Customer.id, day).where(quiet, ~fired)))  # sorted here: see date_firings


# --------------------------------------------------------------------------- storing firings
def store_firings(store, touchpoint: str, kind: str, firings: Sequence[tuple[str, str, dict]],
                  now: datetime) -> int:
    """Store each ``(customer id, event id, data)`` as a trigger event in the inbox (its id is
    the dedup key) with the unit that starts the journey, one transaction per batch; the unit
    driver launches them. Returns how many were new."""
    from flows.engine import units
    from flows.engine.redrive import start_unit_id

    event_type = f"{kind}.trigger"
    stored = 0
    for i in range(0, len(firings), _BATCH):
        chunk = firings[i:i + _BATCH]
        with store.session() as session:
            known = fired_ids(session, [event_id for _, event_id, _ in chunk])
            for customer_id, event_id, data in chunk:
                if event_id in known:
                    continue
                known.add(event_id)
                event = {"id": event_id, "type": event_type, "customer_id": customer_id,
                         "occurred_at": now.isoformat(), "data": data}
                session.add(Event(id=event_id, type=event_type, customer_id=customer_id,
                                  data=data, occurred_at=now, received_at=now, source="scheduler",
                                  status="dispatched", dispatched_at=now,
                                  result={"started": [touchpoint]}))
                units.queue(session, id=start_unit_id(touchpoint, event_id), kind="start",
                            touchpoint=touchpoint, label=customer_id,
                            params={"event": event, "customer_id": customer_id})
                stored += 1
    return stored


# --------------------------------------------------------------------------- the cadence
@dataclass
class _Scan:
    signature: tuple
    at: datetime  # journey time of the full scan
    last: datetime  # journey time of the latest look
    upcoming: dict[str, list[DateFiring]] = field(default_factory=dict)

    def current(self, signature: tuple, now: datetime) -> bool:
        return signature == self.signature and self.last <= now < self.at + RESCAN


class TriggerScanner:
    """The date and inactivity triggers of one engine, at their cadence (see the module)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self._dates: _Scan | None = None
        self._quiet: _Scan | None = None

    def _touchpoints(self, kind: str) -> list:
        return [tp for tp in self.engine.config.touchpoints.values()
                if tp.enabled and tp.trigger.kind == kind]

    @staticmethod
    def _signature(touchpoints) -> tuple:
        return tuple((tp.name, tp.trigger.model_dump_json()) for tp in touchpoints)

    # ------------------------------------------------------------------ date triggers
    def dates(self, now: datetime, *, full: bool = False) -> int:
        """Fire the date triggers due at ``now``; a full scan when due (or ``full``)."""
        touchpoints = self._touchpoints("date")
        signature = self._signature(touchpoints)
        if full or self._dates is None or not self._dates.current(signature, now):
            return self._scan_dates(touchpoints, signature, now)
        fired = self._fire_upcoming(touchpoints, now)
        self._dates.last = now
        return fired

    def _scan_dates(self, touchpoints, signature: tuple, now: datetime) -> int:
        scan = _Scan(signature=signature, at=now, last=now)
        fired = 0
        for tp in touchpoints:
            with self.engine.store.read_session() as session:
                found = date_firings(session, tp.trigger, now - CATCH_UP, now + AHEAD)
                done = fired_ids(session, [f.event_id(tp.name) for f in found])
            found = [f for f in found if f.event_id(tp.name) not in done]
            scan.upcoming[tp.name] = sorted(f for f in found if f.when > now)
            fired += self._fire_dates(tp, [f for f in found if f.when <= now], now)
        self._dates = scan
        return fired

    def _fire_upcoming(self, touchpoints, now: datetime) -> int:
        """The held firings whose moment came, checked against the customers' rows as they
        are now (a date that moved fires at its new moment, or not at all). They leave the
        memory once stored: a tick that fails leaves them for the next."""
        fired = 0
        upcoming = self._dates.upcoming
        for tp in touchpoints:
            held = upcoming.get(tp.name, [])
            cut = bisect.bisect_right([f.when for f in held], now)
            if not cut:
                continue
            with self.engine.store.read_session() as session:
                fresh = date_firings(session, tp.trigger, now - CATCH_UP, self._dates.at + AHEAD,
                                     customer_ids=[f.customer_id for f in held[:cut]])
            fired += self._fire_dates(tp, [f for f in fresh if f.when <= now], now)
            upcoming[tp.name] = sorted([*held[cut:], *(f for f in fresh if f.when > now)])
        return fired

    def _fire_dates(self, tp, firings: list[DateFiring], now: datetime) -> int:
        rel = tp.trigger.date
        return store_firings(self.engine.store, tp.name, "date",
                             [(f.customer_id, f.event_id(tp.name), f.data(rel))
                              for f in sorted(firings, key=lambda f: f.customer_id)], now)

    # ------------------------------------------------------------------ inactivity
    def inactivity(self, now: datetime, *, full: bool = False) -> int:
        """Fire the inactivity triggers due at ``now``: everyone silent long enough on a full
        scan, else only those who crossed the threshold since the previous look."""
        touchpoints = self._touchpoints("inactivity")
        signature = self._signature(touchpoints)
        scan = self._quiet
        if full or scan is None or not scan.current(signature, now):
            scan, since = _Scan(signature=signature, at=now, last=now), None
        else:
            since = scan.last
        fired = 0
        for tp in touchpoints:
            with self.engine.store.read_session() as session:
                quiet = quiet_customers(session, tp.name, tp.trigger.inactivity, now, since)
            fired += store_firings(self.engine.store, tp.name, "inactivity",
                                   [(cid, inactivity_event_id(tp.name, cid, day),
                                     {"last_contact": day}) for cid, day in quiet], now)
        scan.last, self._quiet = now, scan  # only once done: a failed tick is looked at again
        return fired
