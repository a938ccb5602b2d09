"""Where journeys stand: for `touchpoints journeys` and the web app."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from flows.store.tables import Continuation, Journey, Member


def journey_rows(session, *, customer_id: str | None = None, touchpoint: str | None = None,
                 limit: int = 200) -> list[dict]:
    query = select(Journey).order_by(Journey.started_at.desc()).limit(limit)
    if touchpoint:
        query = query.where(Journey.touchpoint == touchpoint)
    if customer_id:
        query = query.where(Journey.id.in_(select(Member.journey_id).where(Member.customer_id == customer_id)))
    rows = []
    for j in session.scalars(query):
        statuses = Counter(session.scalars(select(Member.status).where(Member.journey_id == j.id)))
        nxt = session.scalar(select(Continuation).where(
            Continuation.journey_id == j.id, Continuation.status.in_(("pending", "scheduled")))
            .order_by(Continuation.due_at).limit(1))
        rows.append({"id": j.id, "touchpoint": j.touchpoint, "customer_id": j.customer_id,
                     "entry_key": j.entry_key, "status": j.status, "started_at": j.started_at,
                     "members": dict(statuses),
                     "next": f"{nxt.kind} at {nxt.pointer}, {nxt.due_at:%Y-%m-%d %H:%M} UTC" if nxt else None})
    return rows
