"""Failure reports to the operations address (``defaults.operations``).

When members fail, the batch's failures are counted in the ``alerts`` row of their touch point
(one statement per batch, in the batch's own transaction). :func:`flush_due` (the service's
housekeeping loop) emails every touch point whose failures are pending and whose last report is
at least :data:`WINDOW` old: at most one email per touch point per hour, carrying the count
since the last one. A report is claimed with a conditional UPDATE committed before the SMTP
conversation (two flushes never both send it) and given back if the server refuses it.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from flows import clock
from flows.errors import DeliveryError
from flows.store.tables import Alert

log = logging.getLogger("touchpoints.engine")

#: at most one report per touch point in this window
WINDOW = timedelta(hours=1)
#: failures quoted in one report (the latest batch's)
EXAMPLES = 5


def failure_key(touchpoint: str) -> str:
    return f"failed:{touchpoint}"


def record_failures(session, *, touchpoint: str, step: str, failures: list[tuple[str, str]],
                    now: datetime) -> None:
    """Count ``failures`` ((customer id, reason) of one batch's failed members) in one upsert,
    in the caller's transaction. The row keeps the latest batch's examples."""
    if not failures:
        return
    detail = {"touchpoint": touchpoint, "step": step, "at": now.isoformat(),
              "examples": [{"customer_id": cid, "reason": reason[:300]}
                           for cid, reason in failures[:EXAMPLES]]}
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(Alert).values(key=failure_key(touchpoint), last_sent_at=None,
                                     pending=len(failures), total=len(failures), detail=detail,
                                     updated_at=now)
    session.execute(statement.on_conflict_do_update(
        index_elements=[Alert.key],
        set_={"pending": Alert.pending + statement.excluded.pending,
              "total": Alert.total + statement.excluded.total,
              "detail": statement.excluded.detail,
              "updated_at": statement.excluded.updated_at}))


def _due(now: datetime):
    return (Alert.key.like("failed:%"), Alert.pending > 0,
            or_(Alert.last_sent_at.is_(None), Alert.last_sent_at <= now - WINDOW))


def flush_due(engine, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Email the failure report of every touch point that is due one; one entry per report
    (touchpoint, count, total, status sent|failed, reason). Nothing without an operations
    address."""
    to = engine.config.defaults.operations
    if not to:
        return []
    now = now or clock.now()
    with engine.store.session() as session:
        rows = session.execute(select(Alert.key, Alert.pending, Alert.total, Alert.last_sent_at,
                                      Alert.detail).where(*_due(now)).order_by(Alert.key)).all()
    reports: list[dict[str, Any]] = []
    mail = None
    try:
        for key, pending, total, last_sent, detail in rows:
            if not _claim(engine, key, pending, now):
                continue  # another flush took it
            detail = dict(detail or {})
            touchpoint = detail.get("touchpoint") or key.removeprefix("failed:")
            report = {"touchpoint": touchpoint, "count": pending, "total": total, "to": to,
                      "status": "sent", "reason": ""}
            try:
                message = report_message(engine, to=to, touchpoint=touchpoint, count=pending,
                                         total=total, since=last_sent, detail=detail, now=now)
                if mail is None:
                    mail = engine.open_mail_session()
                mail.send(message)
            except (DeliveryError, ValueError) as exc:
                report.update(status="failed", reason=getattr(exc, "message", None) or str(exc))
                _give_back(engine, key, pending, last_sent)
            _audit(engine, report, now)
            reports.append(report)
    finally:
        if mail is not None:
            mail.close()
    return reports


def _claim(engine, key: str, pending: int, now: datetime) -> bool:
    with engine.store.session() as session:
        claimed = session.execute(
            update(Alert).where(Alert.key == key, Alert.pending >= pending, *_due(now))
            .values(pending=Alert.pending - pending, last_sent_at=now, updated_at=now)
            .execution_options(synchronize_session=False)).rowcount
    return claimed == 1


def _give_back(engine, key: str, pending: int, last_sent: datetime | None) -> None:
    """The report was not sent: its count is pending again, and due at the next flush."""
    with engine.store.session() as session:
        session.execute(update(Alert).where(Alert.key == key)
                        .values(pending=Alert.pending + pending, last_sent_at=last_sent)
                        .execution_options(synchronize_session=False))


def _audit(engine, report: dict[str, Any], now: datetime) -> None:
    from flows.store import audit

    with engine.store.session() as session:
        audit.record(session, action="alert.sent" if report["status"] == "sent" else "alert.failed",
                     result=report["status"], actor="system", touchpoint=report["touchpoint"],
                     at=now, reason=f"{report['count']} failed member(s) reported to "
                                    f"{report['to']}" + (f": {report['reason']}"
                                                         if report["reason"] else ""),
                     detail={"count": report["count"], "total": report["total"]})


def report_message(engine, *, to: str, touchpoint: str, count: int, total: int,
                   since: datetime | None, detail: dict[str, Any], now: datetime):
    """The report email, built by the message builder (headers from structured values)."""
    from flows.mail.message import build_message

    d = engine.config.defaults
    period = f"since the last report at {since:%Y-%m-%d %H:%M} UTC" if since else "so far"
    lines = [(f"{count} member(s) of the touch point {touchpoint} failed {period} "
              f"({total} in all)."), "",
             f"Latest failures, at step {detail.get('step', '?')}:"]
    lines += [f"  {e.get('customer_id')}: {e.get('reason')}" for e in detail.get("examples", [])]
    lines += ["", "Once the cause is fixed, run them again with:",
              f"  touchpoints journeys retry {touchpoint}",
              "", "Each failure is in the audit trail with the action journey.failed."]
    text = "\n".join(lines)
    body = "".join(f"<p>{html.escape(line)}</p>" if line else "" for line in lines)
    return build_message(sender=d.sender, to=to, subject=f"{count} failed in {touchpoint}",
                         text=text, html=f"<html><body>{body}</body></html>",
                         key=f"alert:{failure_key(touchpoint)}:{now:%Y%m%dT%H%M%S}",
                         reply_to=d.reply_to, transactional=True,
                         postal_address=d.postal_address, unsubscribe_url=None,
                         preferences_url=None)
