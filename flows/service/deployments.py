"""Touch points as served Prefect deployments, and the launcher that runs journeys through them.

* every touch point is one deployment named ``<touchpoint>/<touchpoint>``;
* a schedule trigger becomes the deployment's cron schedule;
* starting and resuming journeys are ``run_deployment(..., timeout=0, idempotency_key=...)``;
  a continuation is a flow run *scheduled* for its due time, visible as Scheduled in the UI.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from flows import clock
from flows.engine.launch import run_tags
from flows.store.tables import Continuation, Journey

log = logging.getLogger("touchpoints.service")

NAMED_CRON = {"daily": "0 9 * * *", "weekly": "0 9 * * 1", "monthly": "0 9 1 * *",
              "quarterly": "0 9 1 1,4,7,10 *", "yearly": "0 9 1 1 *"}


def deployment_name(touchpoint: str) -> str:
    return f"{touchpoint}/{touchpoint}"


def build_deployments(engine) -> list:
    """RunnerDeployments for every enabled touch point (flows load from flows.engine.entry)."""
    from prefect.types.entrypoint import EntrypointType

    from flows.engine.compiler import compile_touchpoint

    deployments = []
    for tp in engine.config.touchpoints.values():
        if not tp.enabled:
            continue
        flow = compile_touchpoint(tp)
        options = {}
        if tp.trigger.kind == "schedule":
            options["cron"] = tp.trigger.cron
            options["parameters"] = {"label": tp.name}
        deployments.append(flow.to_deployment(
            name=tp.name, tags=[f"touchpoint:{tp.name}"], description=tp.description.strip(),
            entrypoint_type=EntrypointType.MODULE_PATH, **options))
    return deployments


class DeploymentLauncher:
    """Starts and resumes journeys as runs of the served deployments; returns at once."""

    def start(self, touchpoint: str, *, event: dict, customer_id: str | None, label: str) -> dict:
        from prefect.deployments import run_deployment

        run = run_deployment(
            deployment_name(touchpoint), timeout=0, as_subflow=False,
            parameters={"event": event, "customer_id": customer_id, "label": label},
            flow_run_name=f"{label} · {clock.now():%Y-%m-%d}",
            idempotency_key=f"start:{touchpoint}:{event.get('id')}",
            tags=run_tags(touchpoint, customer_id))
        return {"flow_run_id": str(run.id)}

    def resume(self, touchpoint: str, *, journey_id: str, pointer: str, mode: str, label: str,
               customer_id: str | None, continuation: str, due=None) -> dict:
        from prefect.deployments import run_deployment

        due = due or clock.now()
        run = run_deployment(
            deployment_name(touchpoint), timeout=0, as_subflow=False,
            scheduled_time=clock.to_wall(due),
            parameters={"journey_id": journey_id, "resume_at": pointer, "mode": mode,
                        "label": label, "customer_id": customer_id},
            flow_run_name=f"{label} · {due:%Y-%m-%d %H:%M}",
            idempotency_key=f"resume:{continuation}",
            tags=run_tags(touchpoint, customer_id))
        return {"flow_run_id": str(run.id)}


def rescue_overdue(engine, launcher: DeploymentLauncher | None = None,
                   grace: timedelta = timedelta(minutes=2)) -> int:
    """Continuations whose scheduled run came and went while members still wait (the run
    failed, crashed or was cancelled): run them again, under a new idempotency key."""
    from sqlalchemy import exists

    from flows.store.tables import Member

    launcher = launcher or DeploymentLauncher()
    now = clock.now()
    with engine.store.session() as session:
        stuck = session.scalars(select(Continuation).where(
            Continuation.status == "scheduled", Continuation.due_at <= now - grace,
            exists().where(Member.journey_id == Continuation.journey_id,
                           Member.pointer == Continuation.pointer, Member.status == "waiting",
                           Member.due_at <= now))
            .order_by(Continuation.due_at).limit(100)).all()
        todo = [(c.id, c.touchpoint, c.journey_id, c.pointer, c.kind, c.label,
                 session.get(Journey, c.journey_id).customer_id) for c in stuck]
    for cid, tp, jid, pointer, kind, label, customer_id in todo:
        log.warning("continuation %s is overdue with members still waiting: running it again", cid)
        run = launcher.resume(tp, journey_id=jid, pointer=pointer,
                              mode="at" if kind == "defer" else "after", label=label,
                              customer_id=customer_id, continuation=f"{cid}:rescue:{now:%Y%m%d%H%M}")
        with engine.store.session() as session:
            session.get(Continuation, cid).flow_run_id = run["flow_run_id"]
    return len(todo)


def schedule_pending(engine, launcher: DeploymentLauncher | None = None,
                     journey_id: str | None = None, horizon: timedelta | None = None) -> int:
    """Turn pending continuations into scheduled Prefect runs (idempotent per continuation)."""
    launcher = launcher or DeploymentLauncher()
    with engine.store.session() as session:
        query = select(Continuation).where(Continuation.status == "pending")
        if journey_id:
            query = query.where(Continuation.journey_id == journey_id)
        if horizon is not None:
            query = query.where(Continuation.due_at <= clock.now() + horizon)
        rows = session.scalars(query.order_by(Continuation.due_at).limit(500)).all()
        todo = []
        for c in rows:
            journey = session.get(Journey, c.journey_id)
            todo.append((c.id, c.touchpoint, c.journey_id, c.pointer, c.kind, c.label, c.due_at,
                         journey.customer_id if journey else None,
                         journey is not None and journey.status == "active"))
    count = 0
    for cid, tp, jid, pointer, kind, label, due, customer_id, active in todo:
        if not active:
            continue
        run = launcher.resume(tp, journey_id=jid, pointer=pointer,
                              mode="at" if kind == "defer" else "after", label=label,
                              customer_id=customer_id, continuation=cid, due=due)
        with engine.store.session() as session:
            row = session.get(Continuation, cid)
            if row is not None and row.status == "pending":
                row.status, row.flow_run_id = "scheduled", run["flow_run_id"]
        count += 1
    return count
