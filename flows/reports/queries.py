"""The report's figures, each one GROUP BY query over the store (never whole ORM rows).

Medians are read from GROUP BY histograms (whole minutes per team), never from loaded rows.
Works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session

from flows import clock
from flows.reports.sql import median, seconds_between
from flows.store.tables import AuditRow, Delivery, Journey, Member, Survey, Task

DETRACTOR_LIMIT = 50


def _since(column, since: datetime | None):
    return [column >= since] if since is not None else []


def _tp(column, touchpoint: str | None):
    return [column == touchpoint] if touchpoint else []


def journeys(session: Session, since=None, touchpoint=None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    q = (select(Journey.touchpoint, Journey.status, func.count())
         .where(*_since(Journey.started_at, since), *_tp(Journey.touchpoint, touchpoint))
         .group_by(Journey.touchpoint, Journey.status))
    for tp, status, n in session.execute(q):
        entry = out.setdefault(tp, {"started": 0, "by_status": {}, "members": {}, "exits": {},
                                    "goals": 0})
        entry["started"] += n
        entry["by_status"][status] = n
    q = (select(Journey.touchpoint, Member.status, func.count())
         .join(Journey, Journey.id == Member.journey_id)
         .where(*_since(Journey.started_at, since), *_tp(Journey.touchpoint, touchpoint))
         .group_by(Journey.touchpoint, Member.status))
    for tp, status, n in session.execute(q):
        out.setdefault(tp, {"started": 0, "by_status": {}, "members": {}, "exits": {},
                            "goals": 0})["members"][status] = n
    q = (select(AuditRow.touchpoint, AuditRow.result, AuditRow.reason, func.count())
         .where(AuditRow.result.in_(("goal", "exited")), AuditRow.touchpoint.is_not(None),
                *_since(AuditRow.at, since), *_tp(AuditRow.touchpoint, touchpoint))
         .group_by(AuditRow.touchpoint, AuditRow.result, AuditRow.reason))
    for tp, result, reason, n in session.execute(q):
        entry = out.setdefault(tp, {"started": 0, "by_status": {}, "members": {}, "exits": {},
                                    "goals": 0})
        if result == "goal":
            entry["goals"] += n
        entry["exits"][reason or result] = entry["exits"].get(reason or result, 0) + n
    return out


def emails(session: Session, since=None, touchpoint=None) -> dict[str, dict[str, Any]]:
    """{touchpoint: {step: {status: {reason: n}}}}"""
    out: dict[str, dict[str, Any]] = {}
    q = (select(Delivery.touchpoint, Delivery.step_id, Delivery.status, Delivery.reason,
                func.count())
         .where(*_since(Delivery.created_at, since), *_tp(Delivery.touchpoint, touchpoint))
         .group_by(Delivery.touchpoint, Delivery.step_id, Delivery.status, Delivery.reason))
    for tp, step, status, reason, n in session.execute(q):
        by_reason = out.setdefault(tp, {}).setdefault(step, {}).setdefault(status, {})
        by_reason[reason or ""] = by_reason.get(reason or "", 0) + n
    return out


def surveys(session: Session, since=None, touchpoint=None) -> dict[str, dict[str, Any]]:
    """{touchpoint: {step: {question, sent, not_sent, answered, response_rate, nps|csat}}}"""
    answered = Survey.answered_at.is_not(None)
    same = and_(Delivery.journey_id == Survey.journey_id, Delivery.step_id == Survey.step_id,
                Delivery.customer_id == Survey.customer_id)
    # a survey whose email never went out (suppressed, held out, bounced, still deferred) was
    # not sent: its ledger rows exist and none is ``sent`` (a survey with no ledger row counts)
    unsent = and_(exists().where(same), ~exists().where(same, Delivery.status == "sent"))
    q = (select(Survey.touchpoint, Survey.step_id, Survey.question, func.count(),
                func.sum(case((unsent, 1), else_=0)),
                func.count(Survey.answered_at),
                func.sum(case((and_(answered, Survey.score >= 9), 1), else_=0)),
                func.sum(case((and_(answered, Survey.score <= 6), 1), else_=0)),
                func.sum(case((and_(answered, Survey.score >= 4), 1), else_=0)))
         .where(*_since(Survey.created_at, since), *_tp(Survey.touchpoint, touchpoint))
         .group_by(Survey.touchpoint, Survey.step_id, Survey.question))
    out: dict[str, dict[str, Any]] = {}
    for tp, step, question, created, not_sent, n, promoters, detractors, satisfied in (
            session.execute(q)):
        sent = created - int(not_sent or 0)
        figure: dict[str, Any] = {"question": question, "sent": sent, "not_sent": created - sent,
                                  "answered": n,
                                  "response_rate": round(100 * n / sent, 1) if sent else None}
        if question == "nps":
            figure["nps"] = round(100 * ((promoters or 0) - (detractors or 0)) / n, 1) if n else None
        elif question == "csat":
            figure["csat"] = round(100 * (satisfied or 0) / n, 1) if n else None
        out.setdefault(tp, {})[step] = figure
    return out


def detractors(session: Session, since=None, touchpoint=None) -> list[dict[str, Any]]:
    done = (select(func.count()).select_from(Task)
            .where(Task.journey_id == Survey.journey_id, Task.customer_id == Survey.customer_id,
                   Task.status == "completed").correlate(Survey).scalar_subquery())
    q = (select(Survey.touchpoint, Survey.customer_id, Survey.score, Survey.comment,
                Survey.answered_at, done)
         .where(Survey.question == "nps", Survey.answered_at.is_not(None), Survey.score <= 6,
                *_since(Survey.answered_at, since), *_tp(Survey.touchpoint, touchpoint))
         .order_by(Survey.answered_at.desc()).limit(DETRACTOR_LIMIT))
    return [{"touchpoint": tp, "customer_id": cid, "score": score, "comment": comment or "",
             "answered_at": at.isoformat() if at else None, "follow_up_done": bool(n)}
            for tp, cid, score, comment, at, n in session.execute(q)]


def _pct(part, whole) -> float | None:
    return round(100 * (part or 0) / whole, 1) if whole else None


def _minutes_to(session: Session, where: list, end) -> dict[str, Counter]:
    """{team: {minutes from creation to ``end``: tasks}}: one GROUP BY, whole minutes."""
    minutes = ((seconds_between(Task.created_at, end) + 30) // 60).label("minutes")
    inner = select(Task.team.label("team"), minutes).where(*where, end.is_not(None)).subquery()
    out: dict[str, Counter] = {}
    for team, value, n in session.execute(select(inner.c.team, inner.c.minutes, func.count())
                                          .group_by(inner.c.team, inner.c.minutes)):
        out.setdefault(team, Counter())[value] += n
    return out


def teams(session: Session, since=None, touchpoint=None, now=None) -> dict[str, dict[str, Any]]:
    """Per team: tasks, SLA compliance (of the tasks that are due or done: an open task not yet
    due has missed nothing), median hours to acknowledge and complete, escalations."""
    now = now or clock.now()
    where = [*_since(Task.created_at, since), *_tp(Task.touchpoint, touchpoint)]
    counted = and_(Task.status != "cancelled",
                   (Task.due_at <= now) | Task.completed_at.is_not(None))
    q = (select(Task.team, func.count(), func.sum(case((counted, 1), else_=0)),
                func.sum(case((and_(counted, Task.acknowledged_at <= Task.due_at), 1), else_=0)),
                func.sum(case((and_(counted, Task.completed_at <= Task.due_at), 1), else_=0)))
         .where(*where).group_by(Task.team))
    out: dict[str, dict[str, Any]] = {}
    for team, n, due, ack, done in session.execute(q):
        out[team] = {"created": n, "due": due or 0,
                     "acknowledged_in_sla_pct": _pct(ack, due),
                     "completed_in_sla_pct": _pct(done, due),
                     "median_ack_hours": None, "median_complete_hours": None, "escalations": {}}
    q = (select(Task.team, Task.escalation_level, func.count())
         .where(*where, Task.escalation_level > 0).group_by(Task.team, Task.escalation_level))
    for team, level, n in session.execute(q):
        out[team]["escalations"][str(level)] = n
    for key, end in (("median_ack_hours", Task.acknowledged_at),
                     ("median_complete_hours", Task.completed_at)):
        for team, histogram in _minutes_to(session, where, end).items():
            value = median(histogram)
            if team in out and value is not None:
                out[team][key] = round(value / 60, 2)
    return out


def build(session: Session, *, since: datetime | None = None, touchpoint: str | None = None,
          config=None, now: datetime | None = None) -> dict[str, Any]:
    """Every figure of the report; ``config`` (the loaded touchpoints.yaml) adds the outage and
    maintenance section, whose steps it names."""
    from flows.reports import outages, trends

    now = now or clock.now()
    data = {"since": since.isoformat() if since else None, "touchpoint": touchpoint,
            "generated_at": now.isoformat(),
            "journeys": journeys(session, since, touchpoint),
            "emails": emails(session, since, touchpoint),
            "surveys": surveys(session, since, touchpoint),
            "detractors": detractors(session, since, touchpoint),
            "teams": teams(session, since, touchpoint, now),
            "outages": outages.report(session, config, since, touchpoint) if config else {},
            "trends": trends.build(session, since=since, touchpoint=touchpoint, now=now)}
    return data
