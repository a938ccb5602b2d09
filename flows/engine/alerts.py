"""Alerts to the operations address (``defaults.operations``), throttled.

Every kind of alert counts in one ``alerts`` row per kind and subject, keyed ``<kind>:<subject>``
(``failed:outage``, ``refused:contract.signed``, ``smtp``): ``pending`` is what happened since
the last email, ``total`` what happened in all, ``detail`` the latest examples. The kinds:

* ``failed``: members that failed at a step, counted by :func:`record_failures` in the batch's
  own transaction;
* ``gave-up``, ``refused``, ``smtp``, ``stuck-members``, ``stuck-units``, ``undispatched``,
  ``stalled-tasks``: found by :mod:`flows.engine.alert_checks` in the housekeeping loop.

:func:`flush_due` (the service's housekeeping loop) emails every row whose count is pending and
whose last email is at least :data:`WINDOW` old: at most one email per kind and subject per
hour, carrying the count since the last one. A report is claimed with a conditional UPDATE
committed before the SMTP conversation (two flushes never both send it) and given back if the
server refuses it. Rows keyed ``cursor:…`` hold where the checks left off; they are never sent.
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

#: at most one report per kind and subject in this window
WINDOW = timedelta(hours=1)
#: failures quoted in one report (the latest batch's)
EXAMPLES = 5
#: the prefix of the rows that hold where a check left off (never reported)
CURSOR = "cursor:"


def failure_key(touchpoint: str) -> str:
    return f"failed:{touchpoint}"


def alert_key(kind: str, subject: str | None = None) -> str:
    return f"{kind}:{subject}" if subject else kind


def kind_of(key: str) -> tuple[str, str | None]:
    """(kind, subject) of an alert key."""
    kind, _, subject = key.partition(":")
    return kind, subject or None


def bump(session, key: str, *, count: int, detail: dict[str, Any], now: datetime) -> None:
    """Add ``count`` to the pending and total counts of ``key`` and keep ``detail`` as its
    latest; one upsert in the caller's transaction."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(Alert).values(key=key, last_sent_at=None, pending=count, total=count,
                                     detail=detail, updated_at=now)
    session.execute(statement.on_conflict_do_update(
        index_elements=[Alert.key],
        set_={"pending": Alert.pending + statement.excluded.pending,
              "total": Alert.total + statement.excluded.total,
              "detail": statement.excluded.detail,
              "updated_at": statement.excluded.updated_at}))


def record_failures(session, *, touchpoint: str, step: str, failures: list[tuple[str, str]],
                    now: datetime) -> None:
    """Count ``failures`` ((customer id, reason) of one batch's failed members) in one upsert,
    in the caller's transaction. The row keeps the latest batch's examples."""
    if not failures:
        return
    detail = {"kind": "failed", "touchpoint": touchpoint, "step": step, "at": now.isoformat(),
              "examples": [{"customer_id": cid, "reason": reason[:300]}
                           for cid, reason in failures[:EXAMPLES]]}
    bump(session, failure_key(touchpoint), count=len(failures), detail=detail, now=now)


def _due(now: datetime):
    return (Alert.key.not_like(f"{CURSOR}%"), Alert.pending > 0,
            or_(Alert.last_sent_at.is_(None), Alert.last_sent_at <= now - WINDOW))


def flush_due(engine, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Email every alert that is due one; one entry per report (key, kind, subject,
    touchpoint, count, total, status sent|failed, reason). Nothing without an operations
    address. After a temporary SMTP failure the rest wait for the next flush."""
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
            kind, subject = kind_of(key)
            detail = dict(detail or {})
            touchpoint = detail.get("touchpoint") or (subject if kind == "failed" else None)
            report = {"key": key, "kind": kind, "subject": subject, "touchpoint": touchpoint,
                      "count": pending, "total": total, "to": to, "status": "sent", "reason": ""}
            stop = False
            try:
                message = report_message(engine, to=to, key=key, count=pending, total=total,
                                         since=last_sent, detail=detail, now=now)
                if mail is None:
                    mail = engine.open_mail_session()
                mail.send(message)
            except (DeliveryError, ValueError) as exc:
                report.update(status="failed", reason=getattr(exc, "message", None) or str(exc))
                _give_back(engine, key, pending, last_sent)
                stop = isinstance(exc, DeliveryError) and not exc.permanent
            _audit(engine, report, now)
            reports.append(report)
            if stop:
                break  # the server is unreachable: the rest wait for the next flush
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
    from flows.engine.alert_texts import summary
    from flows.store import audit

    what = summary(report["kind"], report["subject"], report["count"])
    with engine.store.session() as session:
        audit.record(session, action="alert.sent" if report["status"] == "sent" else "alert.failed",
                     result=report["status"], actor="system", touchpoint=report["touchpoint"],
                     at=now, reason=f"{what} reported to {report['to']}"
                                    + (f": {report['reason']}" if report["reason"] else ""),
                     detail={"key": report["key"], "kind": report["kind"],
                             "count": report["count"], "total": report["total"]})


def report_message(engine, *, to: str, key: str, count: int, total: int,
                   since: datetime | None, detail: dict[str, Any], now: datetime):
    """The report email, built by the message builder (headers from structured values)."""
    from flows.engine.alert_texts import render
    from flows.mail.message import build_message

    d = engine.config.defaults
    kind, subject = kind_of(key)
    period = f"since the last report at {since:%Y-%m-%d %H:%M} UTC" if since else "so far"
    title, lines = render(engine, kind, subject, count=count, total=total, period=period,
                          detail=detail)
    text = "\n".join(lines)
    body = "".join(f"<p>{html.escape(line)}</p>" if line else "" for line in lines)
    return build_message(sender=d.sender, to=to, subject=title, text=text,
                         html=f"<html><body>{body}</body></html>",
                         key=f"alert:{key}:{now:%Y%m%dT%H%M%S}",
                         reply_to=d.reply_to, transactional=True,
                         postal_address=d.postal_address, unsubscribe_url=None,
                         preferences_url=None)


def alert_rows(session, *, limit: int = 50) -> list[dict[str, Any]]:
    """The alerts, latest first, with how many are stuck now for the kinds that say (for
    `touchpoints status`)."""
    rows = session.execute(select(Alert.key, Alert.pending, Alert.total, Alert.last_sent_at,
                                  Alert.updated_at, Alert.detail)
                           .where(Alert.key.not_like(f"{CURSOR}%"))
                           .order_by(Alert.updated_at.desc()).limit(limit)).all()
    return [{"key": k, "pending": p, "total": t, "last_sent_at": s, "updated_at": u,
             "now": (d or {}).get("now")} for k, p, t, s, u, d in rows]
