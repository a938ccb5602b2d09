"""Touch points as served Prefect deployments, and the launcher that runs journeys through them.

* every touch point is one deployment named ``<touchpoint>/<touchpoint>``;
* a schedule trigger becomes the deployment's cron schedule;
* starting and resuming journeys are ``run_deployment(..., timeout=0, idempotency_key=...)``;
  a continuation is a flow run *scheduled* for its due time, visible as Scheduled in the UI.
"""

from __future__ import annotations

import logging

from flows.engine.launch import DeploymentLauncher, deployment_name

__all__ = ["NAMED_CRON", "DeploymentLauncher", "build_deployments", "deployment_name"]

log = logging.getLogger("touchpoints.service")

NAMED_CRON = {"daily": "0 9 * * *", "weekly": "0 9 * * 1", "monthly": "0 9 1 * *",
              "quarterly": "0 9 1 1,4,7,10 *", "yearly": "0 9 1 1 *"}


def build_deployments(engine) -> list:
    """RunnerDeployments for every enabled touch point (flows load from flows.engine.entry)."""
    from prefect.types.entrypoint import EntrypointType

    from flows.engine.compiler import compile_touchpoint
    from flows.reports.weekly import deployment as weekly_report

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
    deployments += _retired(engine)
    deployments.append(weekly_report())  # the qos-weekly-report flow, Mondays 07:00 UTC
    return deployments


def _retired(engine) -> list:
    """A deployment for each touch point removed from touchpoints.yaml while journeys of it are
    in flight, compiled from its stored version: they finish on it (no trigger, no schedule:
    nothing new starts)."""
    from prefect.types.entrypoint import EntrypointType

    from flows.engine.compiler import compile_touchpoint
    from flows.engine.versions import retired, retired_names

    out = []
    with engine.store.read_session() as session:
        pinned = {name: retired(engine, session, name) for name in retired_names(engine, session)}
    for name, version in sorted(pinned.items()):
        if version is None:  # nothing stored to finish on: those journeys fail when due
            continue
        out.append(compile_touchpoint(version.touchpoint).to_deployment(
            name=name, tags=[f"touchpoint:{name}", "retired"],
            description=(f"{name} is no longer in touchpoints.yaml: this deployment only "
                         "finishes its journeys in flight, on their stored versions."),
            entrypoint_type=EntrypointType.MODULE_PATH))
        log.info("serving removed touch point %s for its journeys in flight", name)
    return out
