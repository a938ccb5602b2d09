"""The one path from a unit of work to a Prefect run, and the watchdog that drives units again.

* :func:`queue_continuations` turns a journey's parked continuations into queued resume units;
* :meth:`UnitDriver.launch_queued` launches queued units through the launcher it was given
  (scheduled Prefect runs for future continuations, idempotency key per unit and attempt);
* :meth:`UnitDriver.watch` decides from the store's leases and the runs' real states in
  Prefect, in wall-clock time: a unit whose lease expired, or whose run ended (or never
  started) without finishing it, is launched again; a unit whose run is Scheduled, Late,
  Pending or Running with a live lease is left alone, so there is never a second run for it.
  A run whose process died is set Crashed in Prefect.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from flows import clock
from flows.engine.units import LEASE_TTL, wall_now
from flows.store.tables import Continuation, Journey, Member, WorkUnit

log = logging.getLogger("touchpoints.engine")

#: a run that is Pending or Running this long without taking its unit's lease is dead
UNLEASED_GRACE = timedelta(seconds=120)
#: launches of one unit before it is given up (with the reason in the audit)
MAX_ATTEMPTS = 6
#: Prefect state types in which a run is still on its way
LIVE = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"}
WAITING = {"SCHEDULED", "PAUSED"}


def resume_unit_id(continuation: str) -> str:
    return f"resume:{continuation}"


def start_unit_id(touchpoint: str, event_id: str) -> str:
    return f"start:{touchpoint}:{event_id}"


def queue_continuations(session, *, journey_id: str | None = None, limit: int = 500) -> int:
    """Queue a resume unit for every pending continuation (of one journey, or all) and mark the
    continuation scheduled; written in the caller's transaction."""
    from flows.engine import units

    query = (select(Continuation, Journey).join(Journey, Journey.id == Continuation.journey_id)
             .where(Continuation.status == "pending"))
    if journey_id:
        query = query.where(Continuation.journey_id == journey_id)
    count = 0
    for cont, journey in session.execute(query.order_by(Continuation.due_at).limit(limit)).all():
        if journey.status != "active":
            continue
        mode = "at" if cont.kind == "defer" else "after"
        units.queue(session, id=resume_unit_id(cont.id), kind="resume", touchpoint=cont.touchpoint,
                    journey_id=cont.journey_id, label=cont.label, due_at=cont.due_at,
                    params={"journey_id": cont.journey_id, "pointer": cont.pointer, "mode": mode,
                            "customer_id": journey.customer_id, "continuation": cont.id})
        cont.status = "scheduled"
        count += 1
    session.flush()
    return count


def launch_unit(launcher, unit: dict[str, Any], engine=None) -> Any:
    """Hand one unit to the launcher: the single place where a unit becomes a run. A unit of
    a touch point removed from touchpoints.yaml runs on its journey's stored version, or its
    journey fails with the reason (:func:`flows.engine.migration.launch_retired`)."""
    from flows.engine.core import current_engine
    from flows.engine.migration import launch_retired

    engine = engine or current_engine()
    if unit["touchpoint"] not in engine.config.touchpoints \
            and not launch_retired(engine, launcher, unit):
        return None
    p, attempt = unit["params"], unit["attempts"]
    if unit["kind"] == "start":
        return launcher.start(unit["touchpoint"], event=p["event"], customer_id=p.get("customer_id"),
                              label=unit["label"], unit_id=unit["id"], attempt=attempt)
    if unit["kind"] == "resume":
        return launcher.resume(unit["touchpoint"], journey_id=p["journey_id"], pointer=p["pointer"],
                               mode=p["mode"], label=unit["label"], customer_id=p.get("customer_id"),
                               continuation=p.get("continuation", unit["id"]), due=unit["due_at"],
                               unit_id=unit["id"], attempt=attempt)
    return launcher.redrive(unit["touchpoint"], journey_id=unit["journey_id"], label=unit["label"],
                            customer_id=p.get("customer_id"), unit_id=unit["id"], attempt=attempt,
                            fresh=bool(p.get("fresh")))


def _as_dict(row: WorkUnit) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "touchpoint": row.touchpoint,
            "journey_id": row.journey_id, "params": dict(row.params or {}), "label": row.label,
            "due_at": row.due_at, "attempts": row.attempts}


class UnitDriver:
    """Launches queued units and watches leased and launched ones (the service's loop)."""

    def __init__(self, engine, launcher) -> None:
        self.engine = engine
        self.launcher = launcher

    # ------------------------------------------------------------------ launching
    def launch_queued(self, *, limit: int = 200) -> int:
        with self.engine.store.session() as session:
            queue_continuations(session)
            rows = session.scalars(select(WorkUnit).where(WorkUnit.status == "queued")
                                   .order_by(WorkUnit.created_at).limit(limit)).all()
            todo = [_as_dict(r) for r in rows]
        launched = 0
        live = []
        for unit in todo:
            if unit["attempts"] >= MAX_ATTEMPTS:
                self._give_up(unit["id"], f"launched {unit['attempts']} times without finishing")
                continue
            live.append(unit)
        for group in self._batches(live):
            if len(group) == 1:
                outcome = launch_unit(self.launcher, group[0], self.engine) or {}
            else:
                outcome = self.launcher.start_batch(
                    group[0]["touchpoint"], unit_ids=[u["id"] for u in group],
                    customer_ids=[u["params"].get("customer_id") for u in group],
                    attempt=max(u["attempts"] for u in group)) or {}
            with self.engine.store.session() as session:
                session.execute(update(WorkUnit).where(WorkUnit.id.in_([u["id"] for u in group]),
                                                       WorkUnit.status == "queued")
                                .values(status="launched", flow_run_id=outcome.get("flow_run_id"),
                                        launched_at=wall_now(), attempts=WorkUnit.attempts + 1,
                                        updated_at=wall_now())
                                .execution_options(synchronize_session=False))
            launched += len(group)
        return launched

    def _batches(self, todo: list[dict]) -> list[list[dict]]:
        """Starts of one-customer journeys of the same touch point share a run, up to
        ``start_batch`` of them; everything else is a run of its own."""
        size = max(1, self.engine.settings.start_batch)
        groups: list[list[dict]] = []
        open_batches: dict[str, list[dict]] = {}
        for unit in todo:
            tp = self.engine.config.touchpoints.get(unit["touchpoint"])
            if (size == 1 or unit["kind"] != "start" or tp is None or tp.audience != "customer"
                    or not hasattr(self.launcher, "start_batch")):
                groups.append([unit])
                continue
            batch = open_batches.get(unit["touchpoint"])
            if batch is None or len(batch) >= size:
                batch = open_batches[unit["touchpoint"]] = []
                groups.append(batch)
            batch.append(unit)
        return groups

    # ------------------------------------------------------------------ watching
    def watch(self) -> int:
        """Drive again what a dead run left behind; the number of units queued again."""
        now = wall_now()
        # a future continuation's run is Scheduled until it is due: never ask Prefect about it
        # (thousands of journeys wait for days; their states would be read at every tick)
        due_by = clock.from_wall(now - LEASE_TTL)
        with self.engine.store.session() as session:
            rows = session.scalars(select(WorkUnit).where(or_(
                and_(WorkUnit.status == "leased", WorkUnit.lease_expires_at < now),
                and_(WorkUnit.status == "launched", WorkUnit.launched_at < now - LEASE_TTL,
                     or_(WorkUnit.due_at.is_(None), WorkUnit.due_at <= due_by))))
                .order_by(WorkUnit.updated_at).limit(500)).all()
            suspects = [(r.id, r.status, r.flow_run_id, r.due_at, r.launched_at) for r in rows]
        if not suspects:
            return 0
        states = self.launcher.run_states([s[2] for s in suspects if s[2]])
        requeued = 0
        for unit_id, status, run_id, due_at, launched_at in suspects:
            state = states.get(run_id) if run_id else None
            kind = state["type"] if state else None
            if status == "launched":
                if due_at is not None and clock.to_wall(due_at) > now - LEASE_TTL:
                    continue  # a future continuation: its run is not due yet
                if kind in WAITING:
                    continue  # Scheduled or Late: waiting for a worker, never a second run
                if kind in LIVE and state["since"] > now - UNLEASED_GRACE:
                    continue  # starting up
            if kind in LIVE and kind not in WAITING:
                why = "its lease expired" if status == "leased" else "it never took its unit"
                self.launcher.crash(run_id, f"touchpoints: the run's process is gone ({why}); "
                                            "its work is driven again in a new run")
            reason = (f"lease expired (run {run_id or '?'} {kind or 'gone'})" if status == "leased"
                      else f"run {run_id or '?'} ended {kind or 'gone'} without finishing it")
            with self.engine.store.session() as session:
                result = session.execute(
                    update(WorkUnit).where(WorkUnit.id == unit_id, WorkUnit.status == status,
                                           WorkUnit.flow_run_id == run_id if run_id else
                                           WorkUnit.flow_run_id.is_(None))
                    .values(status="queued", owner=None, lease_expires_at=None, flow_run_id=None,
                            reason=reason[:500], updated_at=wall_now())
                    .execution_options(synchronize_session=False))
            if result.rowcount:
                log.warning("unit %s: %s; driving it again", unit_id, reason)
                requeued += 1
        return requeued

    def settle_on_stop(self) -> int:
        """At a clean stop: runs still Pending or Running for our units end as Crashed, and
        their units are queued again for the next start (no run is left Running)."""
        with self.engine.store.session() as session:
            rows = session.execute(select(WorkUnit.id, WorkUnit.flow_run_id, WorkUnit.status)
                                   .where(WorkUnit.status.in_(("launched", "leased")),
                                          WorkUnit.flow_run_id.is_not(None))).all()
        states = self.launcher.run_states([r[1] for r in rows]) if rows else {}
        settled = 0
        crashed: set[str] = set()
        for unit_id, run_id, status in rows:
            state = states.get(run_id)
            if state is None or state["type"] not in LIVE or state["type"] in WAITING:
                continue
            if run_id not in crashed:  # a run of 50 journey starts holds 50 units: once
                crashed.add(run_id)
                self.launcher.crash(run_id, "touchpoints serve stopped; the work resumes at "
                                            "the next start")
            with self.engine.store.session() as session:
                session.execute(update(WorkUnit).where(WorkUnit.id == unit_id)
                                .values(status="queued", owner=None, lease_expires_at=None,
                                        flow_run_id=None, reason="serve stopped",
                                        updated_at=wall_now())
                                .execution_options(synchronize_session=False))
            settled += 1
        return settled

    def _give_up(self, unit_id: str, reason: str) -> None:
        from flows.store import audit

        now = clock.now()
        with self.engine.store.session() as session:
            unit = session.get(WorkUnit, unit_id)
            unit.status, unit.reason, unit.updated_at = "failed", reason[:500], wall_now()
            if unit.kind == "wave" and unit.journey_id:
                session.execute(update(Member).where(
                    Member.journey_id == unit.journey_id, Member.status == "active",
                    or_(Member.wave == unit_id, Member.wave.like(f"{unit_id}.%")))
                    .values(status="failed", reason=reason[:500], updated_at=now)
                    .execution_options(synchronize_session=False))
            audit.record(session, action="unit.failed", result="failed", actor="system",
                         touchpoint=unit.touchpoint, journey_id=unit.journey_id, at=now,
                         reason=f"{unit.kind} {unit_id}: {reason}",
                         detail={"unit": unit_id, "kind": unit.kind})
        log.error("unit %s given up: %s", unit_id, reason)
