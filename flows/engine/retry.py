"""Running failed members again once their cause is fixed (`touchpoints retry`).

A member fails alone when a step raises for it (``JourneyOps._run_isolated``, audit row
``journey.failed``); it keeps where it stood: ``pointer`` (the last step it finished, or the
step it was to run at) and ``resume_mode``. A retry parks each failed member there, due now,
writes the continuation and queues its resume unit, all in one transaction (the outbox), with a
``journey.retried`` audit row per member. Whoever drives units then runs them: the service's
dispatch loop, or the CLI through the same :func:`flows.engine.redrive.launch_unit` path.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from flows import clock
from flows.engine.journeys import continuation_id
from flows.engine.redrive import queue_continuations, resume_unit_id
from flows.errors import NotFoundError
from flows.store.tables import Continuation, Journey, Member, WorkUnit

#: journeys whose failed members may be retried (a cancelled journey stays cancelled)
RETRYABLE = ("active", "done")


@dataclass
class RetryResult:
    touchpoint: str
    members: int = 0
    journeys: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)   # journey id → why

    def as_dict(self) -> dict[str, Any]:
        return {"touchpoint": self.touchpoint, "members": self.members,
                "journeys": self.journeys, "units": self.units, "skipped": self.skipped}


def retry_failed(engine, touchpoint: str, *, customer_id: str | None = None,
                 journey_id: str | None = None, actor: str = "system",
                 now: datetime | None = None) -> RetryResult:
    """Park every failed member of ``touchpoint`` (of one customer or journey, if given) where
    it failed, due now, and queue the resume units; nothing is launched here."""
    from flows.store import audit

    tp = engine.touchpoint(touchpoint)
    now = now or clock.now()
    result = RetryResult(touchpoint=tp.name)
    first = tp.steps[0].id if tp.steps else None
    with engine.store.session() as session:
        query = (select(Member, Journey).join(Journey, Journey.id == Member.journey_id)
                 .where(Journey.touchpoint == tp.name, Member.status == "failed"))
        if customer_id:
            query = query.where(Member.customer_id == customer_id)
        if journey_id:
            query = query.where(Journey.id == journey_id)
        rows = session.execute(query.order_by(Member.id)).all()
        if not rows and journey_id and session.get(Journey, journey_id) is None:
            raise NotFoundError(f"no journey {journey_id!r}",
                                hint="list them with `touchpoints journeys`")
        groups: dict[tuple[str, str, str], list[Member]] = defaultdict(list)
        journeys: dict[str, Journey] = {}
        for member, journey in rows:
            if journey.status not in RETRYABLE:
                result.skipped[journey.id] = f"the journey is {journey.status}"
                continue
            pointer, mode = member.pointer, member.resume_mode or "after"
            if pointer is None:  # it failed at the very first step
                pointer, mode = first, "at"
            groups[(journey.id, pointer, mode)].append(member)
            journeys[journey.id] = journey
        audits = []
        for (jid, pointer, mode), members in groups.items():
            journey = journeys[jid]
            if journey.status == "done":  # every member had ended: it is open again
                journey.status, journey.ended_at = "active", None
            for member in members:
                audits.append({"action": "journey.retried", "result": "queued", "actor": actor,
                               "touchpoint": tp.name, "customer_id": member.customer_id,
                               "journey_id": jid, "at": now, "step": pointer,
                               "reason": f"{'at' if mode == 'at' else 'after'} step {pointer}; "
                                         f"it had failed: {member.reason or '?'}"[:500],
                               "detail": {"pointer": pointer, "mode": mode}})
                member.status, member.pointer, member.resume_mode = "waiting", pointer, mode
                member.due_at, member.wave, member.lane = now, None, ""
                member.reason, member.updated_at = "retry requested", now
            cid = f"{continuation_id(jid, pointer, mode, now)}:retry"
            if session.get(Continuation, cid) is None:
                session.add(Continuation(id=cid, journey_id=jid, touchpoint=tp.name,
                                         pointer=pointer, kind="defer" if mode == "at" else "wait",
                                         due_at=now, status="pending",
                                         label=f"{journey.customer_id or jid} · retry"))
            result.units.append(resume_unit_id(cid))
            result.members += len(members)
        session.flush()
        for jid in journeys:
            queue_continuations(session, journey_id=jid)
        if audits:
            audit.record_many(session, audits)
        result.journeys = sorted(journeys)
    return result


def queued_units(engine, unit_ids: list[str]) -> list[dict[str, Any]]:
    """The queued units among ``unit_ids``, shaped for :func:`flows.engine.redrive.launch_unit`."""
    with engine.store.session() as session:
        rows = session.scalars(select(WorkUnit).where(WorkUnit.id.in_(unit_ids),
                                                      WorkUnit.status == "queued")).all()
        return [{"id": r.id, "kind": r.kind, "touchpoint": r.touchpoint,
                 "journey_id": r.journey_id, "params": dict(r.params or {}), "label": r.label,
                 "due_at": r.due_at, "attempts": r.attempts} for r in rows]
