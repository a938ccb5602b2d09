"""The report's figures week by week (ISO weeks, Monday to Sunday, UTC).

Each figure is one GROUP BY (touch point or team, week) query; the week comes from
:class:`flows.reports.sql.week_start`, so the same code runs on SQLite and PostgreSQL.
Without ``since`` the trends cover the last :data:`WEEKS` weeks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from flows import clock
from flows.reports.sql import week_label, week_start
from flows.store.tables import AuditRow, Delivery, Journey, Survey, Task

WEEKS = 12


def default_since(now: datetime | None = None) -> datetime:
    now = now or clock.now()
    monday = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)
    return monday - timedelta(weeks=WEEKS - 1)


def _where(column, tp_column, since, touchpoint) -> list:
    return [column >= since, *([tp_column == touchpoint] if touchpoint else [])]


def _pct(part, whole) -> float | None:
    return round(100 * (part or 0) / whole, 1) if whole else None


def journeys(session: Session, since, touchpoint) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    week = week_start(Journey.started_at)
    q = (select(Journey.touchpoint, week, func.count())
         .where(*_where(Journey.started_at, Journey.touchpoint, since, touchpoint))
         .group_by(Journey.touchpoint, week))
    for tp, w, n in session.execute(q):
        out.setdefault(tp, {}).setdefault(week_label(w), {"started": 0, "goals": 0})["started"] = n
    week = week_start(AuditRow.at)
    q = (select(AuditRow.touchpoint, week, AuditRow.result, func.count())
         .where(AuditRow.result.in_(("goal", "exited")), AuditRow.touchpoint.is_not(None),
                *_where(AuditRow.at, AuditRow.touchpoint, since, touchpoint))
         .group_by(AuditRow.touchpoint, week, AuditRow.result))
    for tp, w, result, n in session.execute(q):
        entry = out.setdefault(tp, {}).setdefault(week_label(w), {"started": 0, "goals": 0})
        entry["goals" if result == "goal" else "exited"] = n
    return out


def responses(session: Session, since, touchpoint) -> dict[str, dict[str, dict]]:
    """{touchpoint: {week: {sent, answered, response_rate}}} by the week the survey was made."""
    week = week_start(Survey.created_at)
    q = (select(Survey.touchpoint, week, func.count(), func.count(Survey.answered_at))
         .where(*_where(Survey.created_at, Survey.touchpoint, since, touchpoint))
         .group_by(Survey.touchpoint, week))
    out: dict[str, dict[str, dict]] = {}
    for tp, w, sent, answered in session.execute(q):
        out.setdefault(tp, {})[week_label(w)] = {"sent": sent, "answered": answered,
                                                 "response_rate": _pct(answered, sent)}
    return out


def emails(session: Session, since, touchpoint) -> dict[str, dict[str, dict[str, int]]]:
    week = week_start(Delivery.created_at)
    q = (select(Delivery.touchpoint, week, Delivery.status, func.count())
         .where(*_where(Delivery.created_at, Delivery.touchpoint, since, touchpoint))
         .group_by(Delivery.touchpoint, week, Delivery.status))
    out: dict[str, dict[str, dict[str, int]]] = {}
    for tp, w, status, n in session.execute(q):
        out.setdefault(tp, {}).setdefault(week_label(w), {})[status] = n
    return out


def scores(session: Session, since, touchpoint) -> dict[str, dict[str, dict[str, dict]]]:
    """{"nps"|"csat": {touchpoint: {week: {score, n}}}} by the week of the answer."""
    week = week_start(Survey.answered_at)
    q = (select(Survey.question, Survey.touchpoint, week, func.count(),
                func.sum(case((Survey.score >= 9, 1), else_=0)),
                func.sum(case((Survey.score <= 6, 1), else_=0)),
                func.sum(case((Survey.score >= 4, 1), else_=0)))
         .where(Survey.question.in_(("nps", "csat")), Survey.score.is_not(None),
                *_where(Survey.answered_at, Survey.touchpoint, since, touchpoint))
         .group_by(Survey.question, Survey.touchpoint, week))
    out: dict[str, dict[str, dict[str, dict]]] = {"nps": {}, "csat": {}}
    for question, tp, w, n, promoters, detractors, satisfied in session.execute(q):
        score = (_pct((promoters or 0) - (detractors or 0), n) if question == "nps"
                 else _pct(satisfied, n))
        out[question].setdefault(tp, {})[week_label(w)] = {"score": score, "n": n}
    return out


def sla(session: Session, since, touchpoint, now: datetime) -> dict[str, dict[str, dict]]:
    """{team: {week: {created, due, acknowledged_in_sla_pct, completed_in_sla_pct}}} by the week
    the task was created; a task counts once it is due or done (an open task not yet due has
    not missed anything)."""
    week = week_start(Task.created_at)
    counted = and_(Task.status != "cancelled",
                   (Task.due_at <= now) | Task.completed_at.is_not(None))
    q = (select(Task.team, week, func.count(), func.sum(case((counted, 1), else_=0)),
                func.sum(case((and_(counted, Task.acknowledged_at <= Task.due_at), 1), else_=0)),
                func.sum(case((and_(counted, Task.completed_at <= Task.due_at), 1), else_=0)))
         .where(*_where(Task.created_at, Task.touchpoint, since, touchpoint))
         .group_by(Task.team, week))
    out: dict[str, dict[str, dict]] = {}
    for team, w, created, due, acked, done in session.execute(q):
        out.setdefault(team, {})[week_label(w)] = {
            "created": created, "due": due or 0, "acknowledged_in_sla_pct": _pct(acked, due),
            "completed_in_sla_pct": _pct(done, due)}
    return out


def weeks_between(since: datetime, now: datetime) -> list[str]:
    """The ISO weeks from the one holding ``since`` to the one holding ``now``."""
    monday = since.date() - timedelta(days=since.weekday())
    labels = []
    while monday <= now.date():
        labels.append(week_label(monday))
        monday += timedelta(weeks=1)
    return labels


def build(session: Session, *, since: datetime | None = None, touchpoint: str | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    now = now or clock.now()
    since = since or default_since(now)
    scored = scores(session, since, touchpoint)
    return {"since": since.isoformat(), "weeks": weeks_between(since, now),
            "journeys": journeys(session, since, touchpoint),
            "emails": emails(session, since, touchpoint),
            "responses": responses(session, since, touchpoint),
            "nps": scored["nps"], "csat": scored["csat"],
            "sla": sla(session, since, touchpoint, now)}
