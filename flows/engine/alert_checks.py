"""What the housekeeping loop looks for, for the operations alerts (:mod:`flows.engine.alerts`).

Each check is a few SQL statements over indexed columns, never a loop over every row:

* from the audit trail, since the last check (a ``cursor:audit`` row holds the last ``seq``
  seen; the chain's lock makes ``seq`` follow commit order, so nothing is skipped): events
  refused by their contract (``event.refused``, per event type), units given up
  (``unit.failed``, per touch point), and sends that could not reach the SMTP server
  (``email.deferred`` and ``task.escalated`` with a connection error);
* a cheap connection check (connect, NOOP, quit) to the SMTP server every
  :data:`PROBE_EVERY`, also shown in ``/healthz`` as the part ``smtp``;
* what is stuck now: members waiting at a step whose time passed :data:`MEMBERS_AFTER` ago with
  no unit queued, launched or leased for their journey; units queued or launched for
  :data:`UNITS_AFTER` (wall-clock time) without a run taking them; events still ``received``
  :data:`EVENTS_AFTER` after they arrived; open tasks :data:`TASKS_AFTER` past their last
  escalation level. Each counts what became stuck since the previous check (so a thing that
  stays stuck is reported once) and keeps how many are stuck now.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, literal, or_, select, update

from flows import clock
from flows.engine.alerts import CURSOR, EXAMPLES, alert_key, bump
from flows.engine.units import wall_now
from flows.errors import DeliveryError
from flows.store.tables import Alert, AuditRow, Event, Journey, Member, Task, WorkUnit

log = logging.getLogger("touchpoints.engine")

MEMBERS_AFTER = timedelta(minutes=15)  # journey time past the member's due time
UNITS_AFTER = timedelta(minutes=10)  # wall-clock time queued or launched
EVENTS_AFTER = timedelta(minutes=1)  # journey time since the event arrived
TASKS_AFTER = timedelta(hours=4)  # journey time past the task's last escalation level
PROBE_EVERY = timedelta(minutes=5)
#: the first check of the audit trail looks back this far
FIRST_LOOK_BACK = timedelta(days=1)
#: rows read for the examples of one check
SCAN = 200
#: units that will still run
LIVE_UNITS = ("queued", "launched", "leased")
OPEN_TASKS = ("open", "acknowledged")
#: what smtp.py says when it cannot reach the server
CONNECTION_PHRASES = ("cannot connect to", "dropped the connection", "refused the connection")


def run_checks(engine, *, now: datetime | None = None) -> dict[str, int]:
    """Every check; how many new occurrences each found. A check that fails does not stop the
    others; the first failure is raised at the end (the loop shows it in /healthz)."""
    now = now or clock.now()
    wall = wall_now()
    found: dict[str, int] = {}
    errors: list[Exception] = []
    for name, check in (("audit", audit_checks), ("smtp", probe_smtp),
                        ("stuck-members", stuck_members), ("stuck-units", stuck_units),
                        ("undispatched", undispatched_events), ("stalled-tasks", stalled_tasks)):
        try:
            found.update(check(engine, now=now, wall=wall))
        except Exception as exc:  # noqa: BLE001 - reported after the other checks ran
            log.warning("alert check %s failed: %s", name, exc)
            errors.append(exc)
    if errors:
        raise errors[0]
    return found


# ---------------------------------------------------------------------- cursors
def _cursor(session, name: str) -> dict[str, Any] | None:
    row = session.get(Alert, CURSOR + name)
    return dict(row.detail or {}) if row is not None else None


def _set_cursor(session, name: str, detail: dict[str, Any], now: datetime) -> None:
    bump(session, CURSOR + name, count=0, detail=detail, now=now)


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# ---------------------------------------------------------------------- the audit trail
def audit_checks(engine, *, now: datetime, wall: datetime) -> dict[str, int]:
    """Refused events, given-up units and SMTP connection failures since the last check."""
    with engine.store.session() as session:
        cursor = _cursor(session, "audit")
        high = session.scalar(select(func.max(AuditRow.seq))) or 0
        if cursor is None:
            first = session.scalar(select(func.min(AuditRow.seq))
                                   .where(AuditRow.at >= now - FIRST_LOOK_BACK))
            low = first - 1 if first else high
        else:
            low = int(cursor.get("seq", 0))
        if high <= low and cursor is not None:
            return {"refused": 0, "gave-up": 0, "smtp": 0}
        window = (AuditRow.seq > low, AuditRow.seq <= high)
        found = {"refused": _refused(session, window, now),
                 "gave-up": _gave_up(session, window, now),
                 "smtp": _smtp_failures(engine, session, window, now)}
        _set_cursor(session, "audit", {"seq": high}, now)
    return found


def _grouped(session, subject, window, *where) -> dict[str, int]:
    rows = session.execute(select(subject, func.count()).where(*window, *where)
                           .group_by(subject)).all()
    return {str(s or "?"): n for s, n in rows}


def _latest(session, window, *where) -> list[AuditRow]:
    return list(session.scalars(select(AuditRow).where(*window, *where)
                                .order_by(AuditRow.seq.desc()).limit(SCAN)))


def _refused(session, window, now: datetime) -> int:
    action = AuditRow.action == "event.refused"
    counts = _grouped(session, AuditRow.detail["type"].as_string(), window, action)
    examples: dict[str, list] = {}
    for row in _latest(session, window, action):
        detail = row.detail or {}
        examples.setdefault(str(detail.get("type") or "?"), []).append(
            {"event_id": detail.get("event_id"), "source": row.actor,
             "errors": dict(list((detail.get("errors") or {}).items())[:5])})
    for event_type, count in counts.items():
        bump(session, alert_key("refused", event_type), count=count, now=now,
             detail={"kind": "refused", "subject": event_type, "at": now.isoformat(),
                     "examples": examples.get(event_type, [])[:EXAMPLES]})
    return sum(counts.values())


def _gave_up(session, window, now: datetime) -> int:
    action = AuditRow.action == "unit.failed"
    counts = _grouped(session, AuditRow.touchpoint, window, action)
    examples: dict[str, list] = {}
    for row in _latest(session, window, action):
        unit_id = (row.detail or {}).get("unit")
        run = session.scalar(select(WorkUnit.flow_run_id).where(WorkUnit.id == unit_id)) \
            if unit_id and len(examples.get(row.touchpoint or "?", [])) < EXAMPLES else None
        examples.setdefault(row.touchpoint or "?", []).append(
            {"unit": unit_id, "reason": row.reason, "run": run})
    for touchpoint, count in counts.items():
        bump(session, alert_key("gave-up", touchpoint), count=count, now=now,
             detail={"kind": "gave-up", "subject": touchpoint, "touchpoint": touchpoint,
                     "at": now.isoformat(), "examples": examples.get(touchpoint, [])[:EXAMPLES]})
    return sum(counts.values())


def _smtp_server(engine) -> str:
    try:
        from flows.mail.smtp import SmtpConfig

        return SmtpConfig.from_url(engine.settings.effective_smtp_url).describe()
    except Exception:  # noqa: BLE001 - a bad URL is reported where it is used
        return "(see TOUCHPOINTS_SMTP_URL)"


def _smtp_failures(engine, session, window, now: datetime) -> int:
    where = (AuditRow.action.in_(("email.deferred", "task.escalated")),
             or_(*(AuditRow.reason.like(f"%{phrase}%") for phrase in CONNECTION_PHRASES)))
    count = session.scalar(select(func.count()).select_from(AuditRow).where(*window, *where))
    if count:
        examples = [{"at": row.at.isoformat(), "reason": row.reason[:300]}
                    for row in _latest(session, window, *where)[:EXAMPLES]]
        bump(session, alert_key("smtp"), count=count, now=now,
             detail={"kind": "smtp", "server": _smtp_server(engine), "at": now.isoformat(),
                     "examples": examples})
    return count or 0


def probe_smtp(engine, *, now: datetime, wall: datetime | None = None,
               transport=None) -> dict[str, int]:
    """Connect to the SMTP server (NOOP, quit) at most every :data:`PROBE_EVERY`; a failure
    counts in the ``smtp`` alert. The result is the part ``smtp`` of ``engine.health``."""
    with engine.store.session() as session:
        last = _at((_cursor(session, "smtp-probe") or {}).get("at"))
        if last is not None and now - last < PROBE_EVERY:
            return {"smtp-probe": 0}
        _set_cursor(session, "smtp-probe", {"at": now.isoformat()}, now)
    try:
        if transport is None:
            from flows.mail.smtp import transport_from_settings

            transport = transport_from_settings(engine.settings)
        transport.probe()
    except DeliveryError as exc:
        engine.health["smtp"] = {"ok": False, "error": exc.message[:300],
                                 "checked_at": now.isoformat()}
        log.warning("the SMTP server does not answer: %s", exc.message)
        with engine.store.session() as session:
            bump(session, alert_key("smtp"), count=1, now=now,
                 detail={"kind": "smtp", "server": _smtp_server(engine), "at": now.isoformat(),
                         "examples": [{"at": now.isoformat(), "reason": exc.message[:300]}]})
        return {"smtp-probe": 1}
    engine.health["smtp"] = {"ok": True, "checked_at": now.isoformat()}
    return {"smtp-probe": 0}


# ---------------------------------------------------------------------- what is stuck now
def _gauge(session, kind: str, counts: dict[str | None, tuple[int, int]],
           examples: dict[str | None, list], now: datetime, grace: timedelta) -> int:
    """Count what became stuck (``new``) in each subject's row and keep how many are stuck now;
    the rows of subjects no longer stuck say 0 now."""
    existing = dict(session.execute(select(Alert.key, Alert.detail).where(
        or_(Alert.key == kind, Alert.key.like(f"{kind}:%")))).all())
    for subject, (count, new) in counts.items():
        key = alert_key(kind, subject)
        old = existing.pop(key, None) or {}
        if new or old.get("now") != count:
            bump(session, key, count=new, now=now,
                 detail={"kind": kind, "subject": subject, "now": count, "at": now.isoformat(),
                         "grace": _words(grace),
                         "examples": examples.get(subject, [])[:EXAMPLES]})
    for key, old in existing.items():
        if (old or {}).get("now"):
            session.execute(update(Alert).where(Alert.key == key)
                            .values(detail={**old, "now": 0, "at": now.isoformat()})
                            .execution_options(synchronize_session=False))
    return sum(new for _, new in counts.values())


def _words(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % 60 == 0 and minutes >= 60:
        return f"{minutes // 60} hour(s)"
    return f"{minutes} minutes"


def _since_last(session, name: str) -> dict[str, Any] | None:
    """The previous check that found something stuck (None: count everything as new)."""
    return _cursor(session, name)


def _gauge_done(session, name: str, counts: dict, now: datetime, wall: datetime) -> None:
    """Remember this check only when something is stuck: while nothing is, anything stuck
    later became stuck after it."""
    if counts:
        _set_cursor(session, name, {"at": now.isoformat(), "wall": wall.isoformat()}, now)


def _new(condition) -> Any:
    return func.sum(case((condition, 1), else_=0)) if condition is not None else func.count()


def stuck_members(engine, *, now: datetime, wall: datetime) -> dict[str, int]:
    cut = now - MEMBERS_AFTER
    live = exists().where(WorkUnit.journey_id == Member.journey_id,
                          WorkUnit.status.in_(LIVE_UNITS))
    stuck = (Member.status == "waiting", Member.due_at.is_not(None), Member.due_at <= cut,
             Journey.status == "active", ~live)
    with engine.store.session() as session:
        prev = _at((_since_last(session, "stuck-members") or {}).get("at"))
        new = Member.due_at > prev - MEMBERS_AFTER if prev else None
        rows = session.execute(select(Journey.touchpoint, func.count(), _new(new))
                               .select_from(Member).join(Journey, Journey.id == Member.journey_id)
                               .where(*stuck).group_by(Journey.touchpoint)).all()
        counts = {tp: (n, int(fresh or 0)) for tp, n, fresh in rows}
        examples: dict[str | None, list] = {}
        if counts:
            for tp, cid, pointer, due, jid in session.execute(
                    select(Journey.touchpoint, Member.customer_id, Member.pointer, Member.due_at,
                           Member.journey_id).select_from(Member)
                    .join(Journey, Journey.id == Member.journey_id).where(*stuck)
                    .order_by(Member.due_at.desc()).limit(SCAN)):
                examples.setdefault(tp, []).append({"customer_id": cid, "pointer": pointer,
                                                    "due_at": _iso(due), "journey_id": jid})
        found = _gauge(session, "stuck-members", counts, examples, now, MEMBERS_AFTER)
        _gauge_done(session, "stuck-members", counts, now, wall)
    return {"stuck-members": found}


def _journey_per_wall(now: datetime) -> float:
    """How much journey time passes per second of wall-clock time (1 but in the demo)."""
    hour = timedelta(hours=1)
    wall_hour = clock.to_wall(now + hour) - clock.to_wall(now)
    return hour / wall_hour if wall_hour else 1.0


def stuck_units(engine, *, now: datetime, wall: datetime) -> dict[str, int]:
    speed = _journey_per_wall(now)

    def stuck_by_time(at_wall: datetime, at_journey: datetime):
        wcut, jcut = at_wall - UNITS_AFTER, at_journey - UNITS_AFTER * speed
        return or_(and_(WorkUnit.status == "queued", WorkUnit.updated_at <= wcut),
                   and_(WorkUnit.status == "launched", WorkUnit.launched_at <= wcut,
                        or_(WorkUnit.due_at.is_(None), WorkUnit.due_at <= jcut)))

    stuck = stuck_by_time(wall, now)
    with engine.store.session() as session:
        prev = _since_last(session, "stuck-units")
        new = (~stuck_by_time(_at(prev["wall"]), _at(prev["at"]))) if prev else None
        rows = session.execute(select(WorkUnit.touchpoint, func.count(), _new(new))
                               .where(stuck).group_by(WorkUnit.touchpoint)).all()
        counts = {tp: (n, int(fresh or 0)) for tp, n, fresh in rows}
        examples: dict[str | None, list] = {}
        if counts:
            for unit in session.scalars(select(WorkUnit).where(stuck)
                                        .order_by(WorkUnit.updated_at.desc()).limit(SCAN)):
                since = unit.launched_at if unit.status == "launched" else unit.updated_at
                examples.setdefault(unit.touchpoint, []).append(
                    {"unit": unit.id, "label": unit.label, "status": unit.status,
                     "since": _iso(since), "run": unit.flow_run_id})
        found = _gauge(session, "stuck-units", counts, examples, now, UNITS_AFTER)
        _gauge_done(session, "stuck-units", counts, now, wall)
    return {"stuck-units": found}


def undispatched_events(engine, *, now: datetime, wall: datetime) -> dict[str, int]:
    stuck = (Event.status == "received", Event.received_at <= now - EVENTS_AFTER)
    with engine.store.session() as session:
        prev = _at((_since_last(session, "undispatched") or {}).get("at"))
        new = Event.received_at > prev - EVENTS_AFTER if prev else None
        count, fresh = session.execute(select(func.count(), _new(new)).select_from(Event)
                                       .where(*stuck)).one()
        counts = {None: (count, int(fresh or 0))} if count else {}
        examples = {None: [{"event_id": e.id, "type": e.type, "received_at": _iso(e.received_at)}
                           for e in session.scalars(select(Event).where(*stuck)
                                                    .order_by(Event.received_at.desc())
                                                    .limit(EXAMPLES))]} if count else {}
        found = _gauge(session, "undispatched", counts, examples, now, EVENTS_AFTER)
        _gauge_done(session, "undispatched", counts, now, wall)
    return {"undispatched": found}


def stalled_tasks(engine, *, now: datetime, wall: datetime) -> dict[str, int]:
    """Open tasks whose every escalation level went out, :data:`TASKS_AFTER` past the last.
    SQL picks the tasks with no level left; only those are looked at here."""
    exhausted = (Task.status.in_(OPEN_TASKS), Task.escalation_level > literal(0),
                 Task.escalation_level >= func.json_array_length(Task.escalations))
    with engine.store.session() as session:
        prev = _at((_since_last(session, "stalled-tasks") or {}).get("at"))
        counts: dict[str | None, tuple[int, int]] = {}
        examples: dict[str | None, list] = {}
        for task in session.scalars(select(Task).where(*exhausted)
                                    .order_by(Task.due_at.desc()).limit(5000)):
            levels = list(task.escalations or [])
            last = levels[-1] if levels else {}
            crossed = task.due_at + timedelta(seconds=float(last.get("after") or 0)) + TASKS_AFTER
            if crossed > now:
                continue
            count, new = counts.get(task.team, (0, 0))
            counts[task.team] = (count + 1, new + (prev is None or crossed > prev))
            if len(examples.setdefault(task.team, [])) < EXAMPLES:
                examples[task.team].append(
                    {"task_id": task.id, "title": task.title, "due_at": _iso(task.due_at),
                     "to": last.get("to"), "link": engine.signer.url("task", task=task.id)})
        found = _gauge(session, "stalled-tasks", counts, examples, now, TASKS_AFTER)
        _gauge_done(session, "stalled-tasks", counts, now, wall)
    return {"stalled-tasks": found}
