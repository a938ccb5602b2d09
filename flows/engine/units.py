"""Leased units of work: the store says where every start, resumption and wave of members
stands; Prefect runs them and shows them. No correctness depends on one Prefect run surviving.

* ``queue`` writes a unit in the caller's transaction (the outbox: an accepted event and the
  units it asks for commit together);
* a run ``acquire``\\ s its unit with a lease (owner = the flow run, expiry in wall-clock time),
  renews it from a :class:`Heartbeat` thread and ``complete``\\ s it;
* :mod:`flows.engine.redrive` launches queued units and drives again those whose lease expired
  or whose run ended without finishing them.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update

from flows.store.tables import WorkUnit

log = logging.getLogger("touchpoints.engine")

#: a lease not renewed for this long belongs to a dead run
LEASE_TTL = timedelta(seconds=30)
#: how often a live run renews its leases
HEARTBEAT_SECONDS = 10.0


def wall_now() -> datetime:
    """Leases and re-drives run on wall-clock time, never on the (demo) journey clock."""
    return datetime.now(UTC)


def queue(session, *, id: str, kind: str, touchpoint: str, params: dict, label: str = "",
          journey_id: str | None = None, due_at: datetime | None = None) -> WorkUnit:
    """The unit ``id``, written in the caller's transaction (idempotent: an existing unit is
    returned as it is)."""
    row = session.get(WorkUnit, id)
    if row is None:
        now = wall_now()
        row = WorkUnit(id=id, kind=kind, touchpoint=touchpoint, journey_id=journey_id,
                       params=params, label=label[:300], status="queued", due_at=due_at,
                       attempts=0, reason="", created_at=now, updated_at=now)
        session.add(row)
        session.flush()
    return row


def acquire(session, unit_id: str, owner: str) -> WorkUnit | None:
    """Lease the unit for ``owner``: it is free, its lease expired, or ``owner`` holds it
    already. None when it is done or another live run holds it."""
    now = wall_now()
    result = session.execute(
        update(WorkUnit)
        .where(WorkUnit.id == unit_id, WorkUnit.status.in_(("queued", "launched", "leased")),
               or_(WorkUnit.status != "leased", WorkUnit.lease_expires_at < now,
                   WorkUnit.owner == owner))
        .values(status="leased", owner=owner, lease_expires_at=now + LEASE_TTL,
                flow_run_id=owner, updated_at=now)
        .execution_options(synchronize_session=False))
    if (result.rowcount or 0) != 1:
        return None
    return session.get(WorkUnit, unit_id, populate_existing=True)


def lease_new(session, *, id: str, kind: str, touchpoint: str, journey_id: str, owner: str,
              params: dict, label: str) -> WorkUnit:
    """A unit born leased by the run that creates it (a wave entered or claimed by this run)."""
    now = wall_now()
    row = WorkUnit(id=id, kind=kind, touchpoint=touchpoint, journey_id=journey_id, params=params,
                   label=label[:300], status="leased", owner=owner, flow_run_id=owner,
                   lease_expires_at=now + LEASE_TTL, launched_at=now, attempts=0, reason="",
                   created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def renew(session, owner: str) -> int:
    """Extend every lease ``owner`` holds; the number renewed."""
    now = wall_now()
    result = session.execute(
        update(WorkUnit).where(WorkUnit.owner == owner, WorkUnit.status == "leased")
        .values(lease_expires_at=now + LEASE_TTL, updated_at=now)
        .execution_options(synchronize_session=False))
    return result.rowcount or 0


def complete(session, unit_id: str, owner: str | None = None, reason: str = "") -> None:
    query = update(WorkUnit).where(WorkUnit.id == unit_id, WorkUnit.status != "done")
    if owner is not None:
        query = query.where(or_(WorkUnit.owner == owner, WorkUnit.owner.is_(None)))
    session.execute(query.values(status="done", owner=None, lease_expires_at=None,
                                 reason=reason[:500], updated_at=wall_now())
                    .execution_options(synchronize_session=False))


def release(session, unit_id: str, owner: str, reason: str) -> None:
    """Give the unit back for another run (e.g. it started too early)."""
    session.execute(update(WorkUnit)
                    .where(WorkUnit.id == unit_id, WorkUnit.owner == owner)
                    .values(status="queued", owner=None, lease_expires_at=None, flow_run_id=None,
                            reason=reason[:500], updated_at=wall_now())
                    .execution_options(synchronize_session=False))


def held_by(session, owner: str) -> list[str]:
    return list(session.scalars(select(WorkUnit.id).where(WorkUnit.owner == owner,
                                                          WorkUnit.status == "leased")))


class Heartbeat:
    """Renews a run's leases every few seconds while it works; stopped when the run ends. If
    the process dies the renewals stop, the leases expire, and the units are driven again."""

    def __init__(self, store, owner: str, every: float = HEARTBEAT_SECONDS) -> None:
        self.store, self.owner, self.every = store, owner, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{owner[:8]}",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                with self.store.session() as session:
                    renew(session, self.owner)
            except Exception as exc:  # a busy database: the next beat tries again
                log.warning("lease heartbeat of %s failed: %s", self.owner, exc)
